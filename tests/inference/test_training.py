"""Training the key-frame CNN as a job: snapshot, trainer, registry, activation, the command,
and resuming a failed job from its checkpoint. Tiny: convnext_atto at 32 px, a few frames."""

from __future__ import annotations

import io
import re
from io import StringIO

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command
from django.urls import reverse
from PIL import Image

from annotation.derivatives import StoredFiles
from annotation.models import Frame
from inference.jobs import resume_job, run_job_here, start_job
from inference.models import DatasetSnapshot, Job, JobKind, JobStatus, ModelKind, ModelVersion
from inference.parameters import TrainKeyframeParameters
from inference.registry import active_version, load_predictor
from tests.factories import CineLoopFactory, ExamFactory, label_loop_frames

pytestmark = pytest.mark.django_db

TINY = {
    "arch": "convnext_atto",
    "image_size": 32,
    "epochs": 2,
    "batch_size": 8,
    "lr": 1e-3,
    "seed": 0,
    "device": "cpu",
    "augment": False,
}


@pytest.fixture(autouse=True)
def one_thread(monkeypatch, settings, tmp_path):
    """One torch thread (the machine is shared) and the jobs' checkpoints under tmp_path."""
    torch.set_num_threads(1)
    monkeypatch.setenv("CAGVLM_TORCH_THREADS", "1")
    settings.VAR_DIR = tmp_path / "var"
    settings.CAGVLM_KEYFRAME_INIT_WEIGHTS = None


def webp(seed: int, bright: bool) -> bytes:
    """A 48 px grey frame: left-bright or right-bright noise, so the classes differ a little."""
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 80, size=(48, 48), dtype=np.uint8)
    image[:, : 24 if bright else 48] += 100
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="WEBP", lossless=True)
    return buffer.getvalue()


@pytest.fixture
def labelled(db) -> list:
    """Three exams, each a left and a right loop with four labelled frames of real WebP."""
    loops = []
    files = StoredFiles()
    seed = 0
    for _ in range(3):
        exam = ExamFactory()
        for laterality in ("LCA", "RCA"):
            loop = CineLoopFactory(exam=exam, frame_count=4)
            for frame in loop.frames.all():
                seed += 1
                Frame.objects.filter(pk=frame.pk).update(
                    image=files.save_bytes("frames", "webp", webp(seed, laterality == "LCA"))
                )
            label_loop_frames(loop, [f"{laterality}_{c}" for c in ("better", "bad", "other", "better")])
            loops.append(loop)
    return loops


def train(user=None, **overrides) -> Job:
    job = start_job(JobKind.TRAIN_KEYFRAME, TrainKeyframeParameters(**(TINY | overrides)), user)
    return run_job_here(job)


def test_training_job_registers_and_activates_a_version(labelled, admin_user, client) -> None:
    job = train(admin_user)

    assert job.status == JobStatus.SUCCEEDED, job.error + job.log_tail
    version = ModelVersion.objects.get()
    assert job.metrics["model_version"] == str(version.uuid)
    assert job.metrics["model_version_number"] == 1
    for name in ("laterality_f1", "keyframe_f1", "keyframe_auroc", "macro_f1", "ece", "confusion_matrix"):
        assert name in job.metrics
    # The snapshot was built for the job, named after it, and the version points to it.
    snapshot = DatasetSnapshot.objects.get()
    assert snapshot.name == f"Training job {str(job.uuid)[:8]}"
    assert str(snapshot.uuid) == job.metrics["snapshot"]
    assert version.snapshot == snapshot
    assert version.training_job == job
    assert version.trained_by == admin_user
    assert version.architecture == "convnext_atto"
    assert version.config["model"]["image_size"] == 32
    assert version.config["training"]["epochs"] == 2
    assert version.metrics["test"]["laterality_f1"] == job.metrics["laterality_f1"]
    assert [row["epoch"] for row in version.metrics["history"]] == [1, 2]
    assert {"confusion_matrix", "reliability", "curves"} <= set(version.artifacts)
    # The first version of a kind is activated.
    assert version.is_active
    assert version.activated_by == admin_user
    assert job.progress == 1.0
    assert "Registered" in job.log_tail

    # The stored weights load into a predictor that gives six probabilities per frame.
    predictor = load_predictor(version, device="cpu", threads=1)
    frame = labelled[0].frames.first()
    probabilities = predictor.predict([frame.image.read()])
    assert probabilities.shape == (1, 6)
    assert probabilities.sum() == pytest.approx(1.0, abs=1e-4)

    # The version's page shows the trainer's metrics and plots.
    client.force_login(admin_user)
    page = client.get(version.get_absolute_url()).content.decode()
    assert "Reliability (calibration)" in page
    assert "Loss and metrics per epoch" in page
    assert f"{job.metrics['laterality_f1']:.3f}" in page
    plot = client.get(reverse("inference:model-artifact", kwargs={"model_uuid": version.uuid, "name": "curves"}))
    assert b"".join(plot.streaming_content).startswith(b"\x89PNG")


def test_later_versions_are_activated_only_when_asked(labelled, admin_user) -> None:
    first = train(admin_user, epochs=1)
    snapshot = first.metrics["snapshot"]
    second = train(admin_user, epochs=1, snapshot=snapshot)
    assert second.status == JobStatus.SUCCEEDED, second.error
    assert active_version(ModelKind.KEYFRAME_CNN).uuid.hex == first.metrics["model_version"].replace("-", "")
    # Trained on the named snapshot: no new one.
    assert DatasetSnapshot.objects.count() == 1
    third = train(admin_user, epochs=1, snapshot=snapshot, activate=True)
    assert str(active_version(ModelKind.KEYFRAME_CNN).uuid) == third.metrics["model_version"]
    assert third.metrics["activated"] is True


def test_training_without_final_labels_fails_with_the_reason(db) -> None:
    job = train()
    assert job.status == JobStatus.FAILED
    assert "no final labels" in job.error
    assert not ModelVersion.objects.exists()


def test_a_failed_job_resumes_from_its_checkpoint(labelled, admin_user, monkeypatch) -> None:
    from inference import training

    original = training._TrainingProgress.progress

    def die_after_first_epoch(self, fraction, step=None, metrics=None):
        # The trainer reports an epoch's metrics after it saved the epoch's checkpoint.
        if metrics and metrics.get("epoch") == 1:
            raise RuntimeError("worker lost its GPU")
        original(self, fraction, step, metrics)

    monkeypatch.setattr(training._TrainingProgress, "progress", die_after_first_epoch)
    failed = train(admin_user, epochs=3, patience=10)
    assert failed.status == JobStatus.FAILED
    assert "worker lost its GPU" in failed.error
    assert not ModelVersion.objects.exists()
    [snapshot] = DatasetSnapshot.objects.all()

    monkeypatch.setattr(training._TrainingProgress, "progress", original)
    resumed = run_job_here(resume_job(failed, admin_user))

    assert resumed.status == JobStatus.SUCCEEDED, resumed.error + resumed.log_tail
    assert resumed.resumed_from == failed
    assert "Resuming after epoch 1" in resumed.log_tail
    # Same snapshot (not a new one built from the labels of the moment), all three epochs.
    assert DatasetSnapshot.objects.count() == 1
    assert resumed.metrics["snapshot"] == str(snapshot.uuid)
    version = ModelVersion.objects.get()
    assert [row["epoch"] for row in version.metrics["history"]] == [1, 2, 3]
    assert version.training_job == resumed


def test_train_keyframe_command_prints_the_metrics_line(labelled) -> None:
    out, err = StringIO(), StringIO()
    call_command(
        "train_keyframe",
        "--arch=convnext_atto",
        "--image-size=32",
        "--epochs=1",
        "--batch-size=8",
        "--micro-batch-size=4",
        "--lr=0.001",
        "--seed=3",
        "--no-augment",
        "--device=cpu",
        "--split-by=loop",
        stdout=out,
        stderr=err,
    )
    last = out.getvalue().strip().splitlines()[-1]
    assert re.fullmatch(
        r"laterality_f1=\d\.\d{3} keyframe_f1=\d\.\d{3} keyframe_auroc=(\d\.\d{3}|n/a) macro_f1=\d\.\d{3} "
        r"ece=\d\.\d{3} model_version=1 snapshot=[0-9a-f-]{36}",
        last,
    ), last
    assert "100.0%" in err.getvalue()
    job = Job.objects.get()
    assert job.created_by is None
    assert job.parameters["micro_batch_size"] == 4
    assert job.parameters["split_by"] == "loop"
    assert job.parameters["augment"] is False
    assert DatasetSnapshot.objects.get().parameters["split_by"] == "loop"


def test_train_keyframe_command_takes_a_recipe_that_flags_override(labelled) -> None:
    from inference.parameters import CPU_RECIPE

    call_command(
        "train_keyframe", "--recipe=cpu", "--image-size=32", "--epochs=1", "--no-augment", stdout=StringIO(),
        stderr=StringIO(),
    )  # fmt: skip

    parameters = Job.objects.get().parameters
    assert parameters["image_size"] == 32
    assert parameters["epochs"] == 1
    assert parameters["augment"] is False
    for name, value in CPU_RECIPE.items():
        if name not in ("image_size", "epochs", "augment"):
            assert parameters[name] == value, name


def test_train_keyframe_command_sets_every_training_option(labelled) -> None:
    call_command(
        "train_keyframe", "--recipe=cpu", "--image-size=32", "--epochs=1", "--augmentation=trivial_augment_wide",
        "--selection-metric=val_macro_f1", "--label-smoothing=0.1", "--epoch-fraction=0.75",
        "--no-tune-keyframe-threshold", "--no-loop-context", "--no-loop-reference", stdout=StringIO(),
        stderr=StringIO(),
    )  # fmt: skip

    parameters = Job.objects.get().parameters
    assert parameters["augmentation"] == "trivial_augment_wide"
    assert parameters["selection_metric"] == "val_macro_f1"
    assert parameters["label_smoothing"] == 0.1
    assert parameters["epoch_fraction"] == 0.75
    assert parameters["tune_keyframe_threshold"] is False
    assert parameters["loop_context_window"] is None  # the recipe's 2, switched off
    assert parameters["loop_reference"] is False  # the recipe's True, switched off
    with pytest.raises(CommandError, match="loop_context_window"):
        call_command("train_keyframe", "--loop-context-window=-1", stdout=StringIO(), stderr=StringIO())


def test_train_keyframe_command_fails_loudly(db, admin_user) -> None:
    with pytest.raises(CommandError, match="no final labels"):
        call_command("train_keyframe", "--arch=convnext_atto", "--image-size=32", "--epochs=1", stdout=StringIO())
    with pytest.raises(CommandError, match="batch_size must be a multiple"):
        call_command("train_keyframe", "--batch-size=10", "--micro-batch-size=4", stdout=StringIO())
    Job.objects.create(kind=JobKind.TRAIN_KEYFRAME, status=JobStatus.RUNNING, exclusive_key="train:keyframe_cnn")
    with pytest.raises(CommandError, match="already queued or running"):
        call_command("train_keyframe", "--epochs=1", stdout=StringIO(), stderr=StringIO())


def test_a_metric_the_test_split_cannot_define_prints_as_not_available():
    from inference.management.commands.train_keyframe import format_metrics_line

    metrics = {"laterality_f1": 0.97, "keyframe_f1": 0.9, "keyframe_auroc": None, "macro_f1": 0.88, "ece": 0.04}
    line = format_metrics_line(metrics | {"model_version_number": 2, "snapshot": "s"})
    assert line == (
        "laterality_f1=0.970 keyframe_f1=0.900 keyframe_auroc=n/a macro_f1=0.880 ece=0.040 model_version=2 snapshot=s"
    )


def test_a_job_training_on_loop_references_makes_them_and_registers_a_two_channel_model(labelled, client, admin_user):
    job = train(admin_user, epochs=1, loop_reference=True)

    assert job.status == JobStatus.SUCCEEDED, job.error + job.log_tail
    version = ModelVersion.objects.get()
    assert version.config["model"]["loop_reference"] is True
    assert version.config["model"]["in_chans"] == 2
    for loop in labelled:
        loop.refresh_from_db()
        assert loop.minimum_projection.name.startswith("loops/")
    predictor = load_predictor(version, device="cpu", threads=1)
    loop = labelled[0]
    frames = [frame.image.read() for frame in loop.frames.order_by("index")]
    probabilities = predictor.predict(frames, references=[loop.minimum_projection.read()] * len(frames))
    assert probabilities.shape == (len(frames), 6)
    client.force_login(admin_user)
    assert "each frame beside its loop's minimum projection" in client.get(version.get_absolute_url()).content.decode()
