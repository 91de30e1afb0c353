"""Exams as the product holds them: de-identified from the first byte.

Patient -> Exam (one DICOM study) -> CineLoop (one multi-frame XA object) -> Frame.
ClinicalDocument holds the free-text reports of an exam, per kind and language.
FrameLabel (one per physician and frame), LabelEvent (the audit trail), FinalLabel (what a
frame is trained with) and PreLabel (the CNN's prediction) hold the labelling, under the
AnnotationProject of the exam.
No field here ever holds a patient's name, ID, birth date or an original DICOM UID: the
patient is a keyed-hash pseudonym, dates are shifted per patient and UIDs are remapped
(see ``annotation.deid``).
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import MinValueValidator
from django.db import models
from django.urls import reverse
from pydantic import BaseModel, ConfigDict, Field
from pydantic import ValidationError as PydanticValidationError


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Patient(TimestampedModel):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # HMAC-SHA256 of the issuer and patient ID under the deployment's pseudonymisation key:
    # the same patient always maps to the same pseudonym, and it cannot be reversed without
    # the key.
    pseudonym = models.CharField(max_length=64, unique=True)
    # Keyed hashes of the name parts and identifiers seen in this patient's DICOM headers,
    # so that free-text documents can be scrubbed of them later without keeping them.
    identifier_digests = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"Patient {self.pseudonym[:12]}"

    @property
    def short_pseudonym(self) -> str:
        return self.pseudonym[:12]


class Exam(TimestampedModel):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="exams")
    # Remapped StudyInstanceUID: ingest of another series of the same study finds this exam.
    study_instance_uid = models.CharField(max_length=64, unique=True)
    # Shifted by the patient's date offset (PS3.15 "modified dates" option).
    study_date = models.DateField(null=True, blank=True)
    # Patient characteristics kept under the Retain Patient Characteristics option.
    patient_sex = models.CharField(max_length=1, blank=True)
    patient_age_years = models.PositiveSmallIntegerField(null=True, blank=True)
    # How the exam's frames are labelled; empty means the default project.
    project = models.ForeignKey(
        "AnnotationProject", on_delete=models.PROTECT, null=True, blank=True, related_name="exams"
    )

    class Meta:
        # The exam list shows the newest study first.
        ordering = ["-study_date", "-created_at"]

    def __str__(self) -> str:
        return f"Exam {str(self.uuid)[:8]}"

    def get_absolute_url(self) -> str:
        return reverse("annotation:exam-detail", kwargs={"exam_uuid": self.uuid})


class FrameTimingSource(models.TextChoices):
    FRAME_TIME_VECTOR = "FrameTimeVector", "Frame Time Vector"
    FRAME_TIME = "FrameTime", "Frame Time"
    CINE_RATE = "CineRate", "Cine Rate"
    RECOMMENDED_DISPLAY_FRAME_RATE = "RecommendedDisplayFrameRate", "Recommended Display Frame Rate"
    ASSUMED = "assumed", "Assumed (no timing in file)"


class CineLoop(TimestampedModel):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    exam = models.ForeignKey(Exam, on_delete=models.CASCADE, related_name="loops")
    # Remapped SOP Instance UID: the idempotency key of ingest (same file twice -> duplicate).
    sop_instance_uid = models.CharField(max_length=64, unique=True)
    series_instance_uid = models.CharField(max_length=64)
    sop_class_uid = models.CharField(max_length=64)
    series_number = models.IntegerField(null=True, blank=True)
    instance_number = models.IntegerField(null=True, blank=True)
    acquisition_datetime = models.DateTimeField(null=True, blank=True)

    frame_count = models.PositiveIntegerField()
    rows = models.PositiveIntegerField()
    columns = models.PositiveIntegerField()
    bits_allocated = models.PositiveSmallIntegerField()
    bits_stored = models.PositiveSmallIntegerField()
    photometric_interpretation = models.CharField(max_length=16)
    transfer_syntax_uid = models.CharField(max_length=64, help_text="As received, before ingest.")

    # Nominal time between frames; per-frame offsets live on Frame.time_offset_ms.
    frame_time_ms = models.FloatField()
    frame_timing_source = models.CharField(max_length=32, choices=FrameTimingSource.choices)

    # C-arm angles in degrees, DICOM sign convention: primary > 0 is LAO, < 0 is RAO;
    # secondary > 0 is cranial, < 0 is caudal.
    positioner_primary_angle = models.FloatField(null=True, blank=True)
    positioner_secondary_angle = models.FloatField(null=True, blank=True)
    # Millimetres per pixel at the detector (ImagerPixelSpacing) or calibrated (PixelSpacing).
    pixel_spacing_row_mm = models.FloatField(null=True, blank=True)
    pixel_spacing_col_mm = models.FloatField(null=True, blank=True)
    distance_source_to_detector_mm = models.FloatField(null=True, blank=True)
    distance_source_to_patient_mm = models.FloatField(null=True, blank=True)

    burned_in_annotation = models.CharField(max_length=8, blank=True, help_text="As the file declares it.")
    # Pixel text may carry identity that header de-identification cannot remove: a human
    # checks such loops before they are used.
    needs_burned_in_review = models.BooleanField(default=False)

    dicom_file = models.FileField(max_length=255, help_text="The de-identified DICOM, content-addressed.")
    dicom_sha256 = models.CharField(max_length=64)
    # Made the first time a job needs it (inference.references): the key-frame CNN can read
    # every frame beside it.
    minimum_projection = models.FileField(
        max_length=255,
        blank=True,
        help_text="Minimum-intensity projection of the loop's display frames (PNG, content-addressed).",
    )

    class Meta:
        ordering = ["exam", "series_number", "instance_number", "created_at"]
        indexes = [
            # The admin's "loops awaiting a burned-in-annotation check" list.
            models.Index(
                fields=["created_at"],
                name="loop_burned_in_review_idx",
                condition=models.Q(needs_burned_in_review=True),
            ),
        ]

    def __str__(self) -> str:
        return f"Loop {str(self.uuid)[:8]} ({self.projection_label})"

    @property
    def projection_label(self) -> str:
        return projection_label(self.positioner_primary_angle, self.positioner_secondary_angle)

    @property
    def frame_rate(self) -> float:
        return 1000.0 / self.frame_time_ms if self.frame_time_ms else 0.0

    @property
    def duration_s(self) -> float:
        return self.frame_count * self.frame_time_ms / 1000.0


def projection_label(primary: float | None, secondary: float | None) -> str:
    """The C-arm projection as cardiologists say it, e.g. ``RAO 30 / CRA 20``.

    Angles within half a degree of zero read as AP (primary) or are left out (secondary).
    """
    if primary is None and secondary is None:
        return "unknown projection"
    parts = []
    if primary is not None:
        if abs(primary) < 0.5:
            parts.append("AP")
        else:
            parts.append(f"{'LAO' if primary > 0 else 'RAO'} {abs(primary):.0f}")
    if secondary is not None and abs(secondary) >= 0.5:
        parts.append(f"{'CRA' if secondary > 0 else 'CAU'} {abs(secondary):.0f}")
    return " / ".join(parts)


class Frame(TimestampedModel):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    loop = models.ForeignKey(CineLoop, on_delete=models.CASCADE, related_name="frames")
    index = models.PositiveIntegerField(help_text="Zero-based frame number within the loop.")
    time_offset_ms = models.FloatField()
    # Statistics of the 8-bit display image, the signal the study sampled frames on.
    intensity_mean = models.FloatField()
    intensity_variance = models.FloatField()
    is_sampled = models.BooleanField(default=False, help_text="Sampled for annotation.")
    image = models.FileField(max_length=255, help_text="WebP display derivative, content-addressed.")

    class Meta:
        ordering = ["loop", "index"]
        constraints = [models.UniqueConstraint(fields=["loop", "index"], name="frame_unique_index_per_loop")]
        indexes = [
            # The annotation worklist: sampled frames of a loop in order.
            models.Index(fields=["loop", "index"], name="frame_sampled_idx", condition=models.Q(is_sampled=True)),
        ]

    def __str__(self) -> str:
        return f"Frame {self.index} of {self.loop_id}"


class DocumentKind(models.TextChoices):
    PRE_PROCEDURE_REPORT = "pre_procedure_report", "Pre-procedure report"
    DIAGNOSIS_SUMMARY = "diagnosis_summary", "Diagnosis summary"
    TREATMENT_PLAN = "treatment_plan", "Treatment plan"


class DocumentLanguage(models.TextChoices):
    JAPANESE = "ja", "日本語"
    ENGLISH = "en", "English"


class ClinicalDocument(TimestampedModel):
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    exam = models.ForeignKey(Exam, on_delete=models.CASCADE, related_name="documents")
    kind = models.CharField(max_length=32, choices=DocumentKind.choices)
    language = models.CharField(max_length=2, choices=DocumentLanguage.choices)
    # Scrubbed of the patient's identifiers before it is saved (annotation.documents).
    text = models.TextField()
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=32, default="manual", help_text="manual, import or phantom")
    validated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    validated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["exam", "kind", "language"]
        constraints = [
            models.UniqueConstraint(fields=["exam", "kind", "language"], name="one_document_per_kind_and_language"),
            models.CheckConstraint(
                condition=models.Q(validated_by__isnull=True, validated_at__isnull=True)
                | models.Q(validated_by__isnull=False, validated_at__isnull=False),
                name="document_validation_has_who_and_when",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.language}) of {self.exam}"

    @property
    def is_validated(self) -> bool:
        return self.validated_at is not None


# --- frame labels, final labels and their audit trail -----------------------------------------


class AnnotationMode(models.TextChoices):
    # Physicians see only their own labels: the agreement between them stays independent.
    BLINDED = "blinded", "Blinded"
    # The key-frame CNN's pre-label is shown beside the frame (still never another physician's).
    ASSISTED = "assisted", "Assisted (model pre-label shown)"


class WorklistOrder(models.TextChoices):
    ACQUISITION = "acquisition", "Acquisition order"
    # Uncertainty of the active model's pre-labels; loops without pre-labels follow in
    # acquisition order.
    ENTROPY = "entropy", "Most uncertain first (entropy)"
    MARGIN = "margin", "Most uncertain first (smallest margin)"


class AnnotationProject(TimestampedModel):
    """How the frames of a set of exams are labelled: the mode and how many physicians must
    agree. Exams without a project belong to the one default project."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100, unique=True)
    mode = models.CharField(max_length=16, choices=AnnotationMode.choices, default=AnnotationMode.BLINDED)
    labels_required = models.PositiveSmallIntegerField(
        default=2,
        validators=[MinValueValidator(1)],
        help_text="Agreeing labels of this many physicians make a frame's final label.",
    )
    worklist_order = models.CharField(
        max_length=16,
        choices=WorklistOrder.choices,
        default=WorklistOrder.ENTROPY,
        help_text="Once the key-frame CNN has pre-labelled frames, loops it is least sure of come first.",
    )
    is_default = models.BooleanField(default=False, editable=False)

    class Meta:
        ordering = ["-is_default", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=models.Q(is_default=True), name="one_default_project"
            ),
            models.CheckConstraint(condition=models.Q(labels_required__gte=1), name="project_labels_required_positive"),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def default(cls) -> AnnotationProject:
        # A data migration creates it; get_or_create keeps a database flushed by a test (or an
        # operator) working rather than failing on every label.
        project, _ = cls.objects.get_or_create(is_default=True, defaults={"name": DEFAULT_PROJECT_NAME})
        return project

    @property
    def is_assisted(self) -> bool:
        return self.mode == AnnotationMode.ASSISTED


DEFAULT_PROJECT_NAME = "Default"


class Laterality(models.TextChoices):
    LCA = "LCA", "LCA (left coronary artery)"
    RCA = "RCA", "RCA (right coronary artery)"


class KeyFrameCategory(models.TextChoices):
    BETTER = "better", "Better"
    BAD = "bad", "Bad"
    OTHER = "other", "Other"


#: What each category means, as the labelling pages show it (from the study's definitions).
CATEGORY_DEFINITIONS = {
    KeyFrameCategory.BETTER: "Vessels fully opacified and sharp: a frame a cardiologist would read from.",
    KeyFrameCategory.BAD: "Contrast present but the frame is poor: partial filling, wash-out, motion or overlap.",
    KeyFrameCategory.OTHER: "No diagnostic coronary content: before contrast, catheter only, other injections.",
}


def class_name(laterality: str, category: str) -> str:
    """One of the six combined classes the key-frame CNN predicts, e.g. ``LCA_better``."""
    return f"{laterality}_{category}"


SIX_CLASSES = [class_name(lat, cat) for lat in Laterality.values for cat in KeyFrameCategory.values]


def _label_choice_constraints(prefix: str) -> list[models.CheckConstraint]:
    return [
        models.CheckConstraint(condition=models.Q(laterality__in=Laterality.values), name=f"{prefix}_laterality_valid"),
        models.CheckConstraint(
            condition=models.Q(category__in=KeyFrameCategory.values), name=f"{prefix}_category_valid"
        ),
    ]


class NeverDeletedQuerySet(models.QuerySet):
    """Labels and their audit events are the record of who said what: they are withdrawn or
    superseded, never deleted."""

    def delete(self) -> tuple[int, dict[str, int]]:
        raise PermissionDenied(f"{self.model._meta.verbose_name_plural} are never deleted.")


class FrameLabel(TimestampedModel):
    """One physician's label of one frame. A physician has one row per frame: a change bumps
    ``version``; a withdrawal sets ``withdrawn_at``; labelling again restores the same row.
    Written only through ``annotation.labels``, which also writes the audit events."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    frame = models.ForeignKey(Frame, on_delete=models.PROTECT, related_name="labels")
    physician = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="frame_labels")
    laterality = models.CharField(max_length=3, choices=Laterality.choices)
    category = models.CharField(max_length=8, choices=KeyFrameCategory.choices)
    note = models.TextField(blank=True)
    # Running total over the physician's visits to the frame.
    seconds_spent = models.FloatField(default=0.0)
    # Optimistic concurrency: a change must name the version it was based on.
    version = models.PositiveIntegerField(default=1)
    withdrawn_at = models.DateTimeField(null=True, blank=True)

    objects = NeverDeletedQuerySet.as_manager()

    class Meta:
        ordering = ["frame", "physician"]
        constraints = [
            models.UniqueConstraint(fields=["frame", "physician"], name="one_label_per_physician_and_frame"),
            models.CheckConstraint(condition=models.Q(seconds_spent__gte=0), name="label_seconds_not_negative"),
            models.CheckConstraint(condition=models.Q(version__gte=1), name="label_version_positive"),
            *_label_choice_constraints("label"),
        ]
        indexes = [
            # The worklist and "my labels": a physician's active labels, joined to frames.
            models.Index(
                fields=["physician", "frame"],
                name="label_active_by_physician_idx",
                condition=models.Q(withdrawn_at=None),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.class_name} by {self.physician_id} on frame {self.frame_id} (v{self.version})"

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise PermissionDenied("Frame labels are never deleted; withdraw them instead.")

    @property
    def is_active(self) -> bool:
        return self.withdrawn_at is None

    @property
    def class_name(self) -> str:
        return class_name(self.laterality, self.category)

    def snapshot(self) -> dict[str, object]:
        """The label as an audit event records it before and after a change."""
        return {
            "laterality": self.laterality,
            "category": self.category,
            "note": self.note,
            "seconds_spent": self.seconds_spent,
            "version": self.version,
            "withdrawn_at": self.withdrawn_at.isoformat() if self.withdrawn_at else None,
        }


class LabelAction(models.TextChoices):
    CREATED = "created", "Created"
    CHANGED = "changed", "Changed"
    WITHDRAWN = "withdrawn", "Withdrawn"
    RESTORED = "restored", "Restored"
    IMPORTED = "imported", "Imported"


class AuditEvent(models.Model):
    """An audit event: written once, in the transaction of the change it records, and never
    changed or deleted (hence no ``updated_at``)."""

    objects = NeverDeletedQuerySet.as_manager()

    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise PermissionDenied("Audit events are never changed.")
        super().save(*args, **kwargs)

    def delete(self, *args: object, **kwargs: object) -> tuple[int, dict[str, int]]:
        raise PermissionDenied("Audit events are never deleted.")


class LabelEvent(AuditEvent):
    """The audit trail: one row per change of a label, with the label before and after. An
    undo is a new event that names the event it reverts."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    label = models.ForeignKey(FrameLabel, on_delete=models.PROTECT, related_name="events")
    frame = models.ForeignKey(Frame, on_delete=models.PROTECT, related_name="label_events")
    # Who made the change: the physician, or the admin who imported the label.
    actor = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="label_events")
    action = models.CharField(max_length=16, choices=LabelAction.choices)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    reverts = models.OneToOneField(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="reverted_by", help_text="Set by undo."
    )
    # Indexed for the audit page: newest first, and filtered by a date range.
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # undo_last: the actor's newest events; also the audit page filtered by physician.
            models.Index(fields=["actor", "-created_at"], name="label_event_actor_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.label_id} by {self.actor_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class FinalLabelMethod(models.TextChoices):
    AGREEMENT = "agreement", "Agreement of physicians"
    ADJUDICATION = "adjudication", "Adjudication"
    IMPORT = "import", "Imported"
    PHANTOM = "phantom", "Phantom ground truth"


class FinalLabel(TimestampedModel):
    """The label a frame is trained with, how it was reached and by whom."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    frame = models.OneToOneField(Frame, on_delete=models.PROTECT, related_name="final_label")
    laterality = models.CharField(max_length=3, choices=Laterality.choices)
    category = models.CharField(max_length=8, choices=KeyFrameCategory.choices)
    method = models.CharField(max_length=16, choices=FinalLabelMethod.choices)
    # Empty for agreement (the note names the physicians who agreed) and the phantom.
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="final_labels_decided"
    )
    decided_at = models.DateTimeField()
    note = models.TextField(blank=True)

    class Meta:
        ordering = ["-decided_at"]
        constraints = [
            *_label_choice_constraints("final_label"),
            models.CheckConstraint(
                condition=~models.Q(method="adjudication") | models.Q(decided_by__isnull=False),
                name="adjudication_names_who_decided",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.class_name} ({self.method}) for frame {self.frame_id}"

    @property
    def class_name(self) -> str:
        return class_name(self.laterality, self.category)

    def snapshot(self) -> dict[str, object]:
        """The final label as an audit event records it before and after a change."""
        return {
            "laterality": self.laterality,
            "category": self.category,
            "method": self.method,
            "decided_by": self.decided_by.get_username() if self.decided_by is not None else None,
            "decided_at": self.decided_at.isoformat(),
            "note": self.note,
        }


class FinalLabelAction(models.TextChoices):
    DECIDED = "decided", "Decided"
    CHANGED = "changed", "Changed"
    CLEARED = "cleared", "Cleared"


class FinalLabelEvent(AuditEvent):
    """The audit trail of final labels: each one reached, changed or cleared, with the final
    label before and after, so that a second adjudication never hides the first."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    frame = models.ForeignKey(Frame, on_delete=models.PROTECT, related_name="final_label_events")
    # Who caused the change: the adjudicator, the admin who imported, or the physician whose
    # label made the labels agree (or disagree again). None for the phantom's ground truth.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="final_label_events",
    )
    action = models.CharField(max_length=16, choices=FinalLabelAction.choices)
    before = models.JSONField(null=True, blank=True)
    after = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"final label {self.action} on frame {self.frame_id} at {self.created_at:%Y-%m-%d %H:%M:%S}"


class PreLabelProbabilities(BaseModel):
    """The six class probabilities of a pre-label, validated before they are stored."""

    model_config = ConfigDict(extra="forbid")

    LCA_better: float = Field(ge=0, le=1)
    LCA_bad: float = Field(ge=0, le=1)
    LCA_other: float = Field(ge=0, le=1)
    RCA_better: float = Field(ge=0, le=1)
    RCA_bad: float = Field(ge=0, le=1)
    RCA_other: float = Field(ge=0, le=1)


class PreLabel(TimestampedModel):
    """The key-frame CNN's prediction for a frame: shown in assisted mode, and the uncertainty
    that orders the worklist. Written by the pre-labelling job (``inference.prelabel``), one
    row per frame and model version."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    frame = models.ForeignKey(Frame, on_delete=models.CASCADE, related_name="prelabels")
    model_version = models.ForeignKey("inference.ModelVersion", on_delete=models.PROTECT, related_name="prelabels")
    probabilities = models.JSONField(help_text="Probability of each of the six classes, e.g. {'LCA_better': 0.8, ...}.")
    # Uncertainty of the prediction, kept so the worklist can order by it in SQL: the entropy
    # of the six probabilities (nats) and the margin between the two most probable classes.
    entropy = models.FloatField(default=0.0)
    margin = models.FloatField(default=1.0)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["frame", "model_version"], name="one_prelabel_per_frame_and_model"),
        ]
        indexes = [
            # The workspace in assisted mode: the newest pre-label of each frame of a loop.
            models.Index(fields=["frame", "-created_at"], name="prelabel_frame_recent_idx"),
            # The worklist's uncertainty order: the active model's pre-labels by frame.
            models.Index(fields=["model_version", "frame"], name="prelabel_model_frame_idx"),
        ]

    def __str__(self) -> str:
        return f"Pre-label of frame {self.frame_id} by model version {self.model_version_id}"

    def clean(self) -> None:
        try:
            PreLabelProbabilities.model_validate(self.probabilities)
        except PydanticValidationError as exc:
            raise ValidationError({"probabilities": str(exc)}) from None

    @property
    def predicted_class(self) -> str:
        return max(self.probabilities, key=self.probabilities.get)
