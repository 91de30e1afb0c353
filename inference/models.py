"""What the inference side of the product records: jobs, dataset snapshots, the model registry
and the key frames the stage-1 CNN picks.

Job is the one row every page reads about long work (training, pre-labelling, later generation
and evaluation); the worker that runs it writes progress, heartbeat and log tail here and
pushes the same to the browser over the channel layer (``inference.jobs``).
DatasetSnapshot is an immutable, content-hashed manifest of the frames and labels a model saw.
ModelVersion is a trained artifact (weights in storage as safetensors) with the snapshot it
saw, its metrics and who activated it; ModelActivation is the history that makes a rollback
possible. KeyFrame and KeyFrameOverride hold the frames of each exam the report model reads,
and the physicians' corrections of them.

The frame-level predictions live in ``annotation.PreLabel`` (the workspace shows them); they
point to the ModelVersion that made them.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.urls import reverse

from annotation.models import Exam, Frame, Laterality, TimestampedModel


class ModelKind(models.TextChoices):
    KEYFRAME_CNN = "keyframe_cnn", "Key-frame CNN (stage 1)"


# --- jobs -------------------------------------------------------------------------------------


class JobKind(models.TextChoices):
    TRAIN_KEYFRAME = "train_keyframe", "Train the key-frame CNN"
    PRELABEL = "prelabel", "Pre-label frames and pick key frames"


class JobStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)
FINISHED_JOB_STATUSES = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)


class Job(TimestampedModel):
    """One unit of long work, the source of truth the UI reads.

    Written only through ``inference.jobs``: it queues the task, moves the status, keeps the
    heartbeat, and pushes every change to the job's channel-layer group.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=32, choices=JobKind.choices)
    status = models.CharField(max_length=16, choices=JobStatus.choices, default=JobStatus.QUEUED)
    progress = models.FloatField(default=0.0, help_text="Fraction done, 0 to 1.")
    step = models.CharField(max_length=200, blank=True, help_text="What the job is doing now.")
    log_tail = models.TextField(blank=True, help_text="The last lines of the job's log.")
    metrics = models.JSONField(default=dict, blank=True)
    # Validated per kind by the pydantic model registered for it in inference.jobs.
    parameters = models.JSONField(default=dict, blank=True)
    error = models.TextField(blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="jobs",
        help_text="Empty for jobs started from the command line.",
    )
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    cancel_requested_at = models.DateTimeField(null=True, blank=True)
    worker = models.CharField(max_length=200, blank=True, help_text="host:pid of the process running the job.")
    task_result_id = models.CharField(max_length=64, blank=True, help_text="The django.tasks result id.")
    resumed_from = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="resumptions"
    )
    # Jobs that must never run side by side share a key (e.g. "train:keyframe_cnn"): the
    # database refuses a second active job with the same key, so two admins pressing "train"
    # at once cannot both win a check-then-act race. NULL, not "", for jobs without a key:
    # NULLs never collide under the unique constraint.
    exclusive_key = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["exclusive_key"],
                condition=models.Q(status__in=ACTIVE_JOB_STATUSES),
                name="one_active_job_per_exclusive_key",
            ),
            models.CheckConstraint(condition=models.Q(progress__gte=0, progress__lte=1), name="job_progress_0_to_1"),
        ]
        indexes = [
            # The heartbeat reaper: running jobs whose heartbeat is older than the timeout.
            models.Index(
                fields=["heartbeat_at"], name="job_running_heartbeat_idx", condition=models.Q(status="running")
            ),
            # The jobs list: newest first, per kind.
            models.Index(fields=["kind", "-created_at"], name="job_kind_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {str(self.uuid)[:8]} ({self.status})"

    def get_absolute_url(self) -> str:
        return reverse("inference:job-detail", kwargs={"job_uuid": self.uuid})

    @property
    def group_name(self) -> str:
        """The channel-layer group that carries this job's progress."""
        return f"job-{self.uuid.hex}"

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_JOB_STATUSES

    @property
    def is_finished(self) -> bool:
        return self.status in FINISHED_JOB_STATUSES


# --- dataset snapshots ------------------------------------------------------------------------


class DatasetSnapshot(TimestampedModel):
    """The frames and labels one training run saw, split by cine loop, frozen.

    The manifest (frame UUIDs, labels, split, content hashes) is a JSON file in storage whose
    SHA-256 is kept here; a snapshot is never changed once written.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=32, choices=ModelKind.choices, default=ModelKind.KEYFRAME_CNN)
    name = models.CharField(max_length=200)
    seed = models.IntegerField()
    parameters = models.JSONField(default=dict, blank=True, help_text="How the split was made.")
    manifest_path = models.CharField(max_length=300, help_text="Storage path of the manifest JSON.")
    manifest_sha256 = models.CharField(max_length=64)
    frame_count = models.PositiveIntegerField()
    # {"train": {"LCA_better": 120, ...}, "validation": {...}, "test": {...}}
    counts = models.JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="dataset_snapshots"
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.frame_count} frames)"

    def get_absolute_url(self) -> str:
        return reverse("inference:snapshot-detail", kwargs={"snapshot_uuid": self.uuid})

    def save(self, *args: object, **kwargs: object) -> None:
        if not self._state.adding:
            raise ValidationError("A dataset snapshot is immutable once written.")
        super().save(*args, **kwargs)  # type: ignore[arg-type]


# --- the model registry -----------------------------------------------------------------------


class ModelVersion(TimestampedModel):
    """A trained model: weights (safetensors in storage), config, the snapshot it saw, its
    test metrics, and whether it is the active version of its kind."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=32, choices=ModelKind.choices, default=ModelKind.KEYFRAME_CNN)
    version = models.PositiveIntegerField(help_text="1, 2, 3... per kind.")
    architecture = models.CharField(max_length=100)
    config = models.JSONField(default=dict, blank=True, help_text="The training configuration, as validated.")
    weights_path = models.CharField(max_length=300, help_text="Storage path of the safetensors file.")
    weights_sha256 = models.CharField(max_length=64)
    snapshot = models.ForeignKey(DatasetSnapshot, on_delete=models.PROTECT, related_name="model_versions")
    metrics = models.JSONField(default=dict, blank=True, help_text="Test-split metrics and per-epoch history.")
    # Name -> storage path of files drawn at the end of training (plots, history CSV).
    artifacts = models.JSONField(default=dict, blank=True)
    training_job = models.ForeignKey(
        Job, on_delete=models.SET_NULL, null=True, blank=True, related_name="model_versions"
    )
    trained_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="models_trained"
    )
    is_active = models.BooleanField(default=False)
    activated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="models_activated"
    )
    activated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["kind", "-version"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "version"], name="one_model_version_number_per_kind"),
            models.UniqueConstraint(
                fields=["kind"], condition=models.Q(is_active=True), name="one_active_model_per_kind"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} v{self.version} ({self.architecture})"

    def get_absolute_url(self) -> str:
        return reverse("inference:model-detail", kwargs={"model_uuid": self.uuid})

    @property
    def label(self) -> str:
        """Short name used where a pre-label or key frame says which model made it."""
        return f"{self.architecture} v{self.version}"

    @property
    def model_settings(self) -> dict[str, Any]:
        """The network's configuration (``config["model"]``, a ``KeyframeModelConfig`` as JSON),
        read without importing the ML code; {} for a version registered without one."""
        model = (self.config or {}).get("model")
        return model if isinstance(model, dict) else {}


class ActivationAction(models.TextChoices):
    ACTIVATED = "activated", "Activated"
    ROLLED_BACK = "rolled_back", "Rolled back to"


class ModelActivation(models.Model):
    """Every change of the active version of a kind: who, when, from which version."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    kind = models.CharField(max_length=32, choices=ModelKind.choices)
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="activations")
    previous = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="superseded_by"
    )
    action = models.CharField(max_length=16, choices=ActivationAction.choices)
    by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="model_activations"
    )
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} {self.model_version} at {self.at:%Y-%m-%d %H:%M}"


# --- key frames -------------------------------------------------------------------------------


class KeyFrameOrigin(models.TextChoices):
    MODEL = "model", "Picked by the model"
    PHYSICIAN = "physician", "Added by a physician"


class KeyFrame(TimestampedModel):
    """A frame of an exam that the report model reads.

    Model-picked rows carry their score and model version; a physician can add frames
    (origin physician) or exclude model-picked ones (``excluded_at``), each recorded as a
    KeyFrameOverride. Rows are never deleted by an override; re-extraction with a new model
    replaces the model's rows and keeps the physicians' decisions.
    """

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    exam = models.ForeignKey(Exam, on_delete=models.CASCADE, related_name="key_frames")
    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="key_frame_entries")
    laterality = models.CharField(max_length=3, choices=Laterality.choices)
    score = models.FloatField(null=True, blank=True, help_text="The model's probability of 'better'.")
    model_version = models.ForeignKey(
        ModelVersion, on_delete=models.PROTECT, null=True, blank=True, related_name="key_frames"
    )
    origin = models.CharField(max_length=16, choices=KeyFrameOrigin.choices)
    excluded_at = models.DateTimeField(null=True, blank=True)
    excluded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="key_frames_excluded"
    )

    class Meta:
        ordering = ["exam", "laterality", "-score"]
        constraints = [
            models.UniqueConstraint(fields=["exam", "frame"], name="one_key_frame_row_per_exam_and_frame"),
            models.CheckConstraint(
                condition=~models.Q(origin="model") | models.Q(model_version__isnull=False),
                name="model_key_frame_names_its_model",
            ),
        ]
        indexes = [
            # The exam page and the corpus export: an exam's key frames still in use.
            models.Index(
                fields=["exam", "laterality"], name="key_frame_in_use_idx", condition=models.Q(excluded_at=None)
            )
        ]

    def __str__(self) -> str:
        return f"Key frame {self.frame_id} of exam {self.exam_id} ({self.laterality}, {self.origin})"

    @property
    def is_in_use(self) -> bool:
        return self.excluded_at is None


class OverrideAction(models.TextChoices):
    ADDED = "added", "Added"
    REMOVED = "removed", "Removed"


class KeyFrameOverride(models.Model):
    """A physician's correction of an exam's key frames, kept forever."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    exam = models.ForeignKey(Exam, on_delete=models.CASCADE, related_name="key_frame_overrides")
    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="key_frame_overrides")
    action = models.CharField(max_length=16, choices=OverrideAction.choices)
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="key_frame_overrides")
    note = models.TextField(blank=True)
    at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-at", "-id"]

    def __str__(self) -> str:
        return f"{self.get_action_display()} frame {self.frame_id} by {self.by_id}"
