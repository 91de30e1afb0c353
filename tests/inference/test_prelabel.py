"""Pre-labelling: PreLabel rows per frame with entropy and margin, no duplicates on a second
run, the job (through run_job_here) that also picks key frames, the ``prelabel`` command, and
the hook that queues a job after ingest only when a key-frame model is active."""

from __future__ import annotations

import hashlib
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse

from annotation.ingest import IngestReport, IngestResult, Outcome
from annotation.models import SIX_CLASSES, CineLoop, Exam, Frame, PreLabel, PreLabelProbabilities
from inference import prelabel
from inference.jobs import run_job_here, start_job
from inference.models import Job, JobKind, JobStatus, KeyFrame
from inference.prelabel import (
    PrelabelError,
    entropy_and_margin,
    prelabel_exams,
    resolve_exams,
    resolve_model_version,
    start_prelabel_after_ingest,
)
from tests.factories import CineLoopFactory, ExamFactory, ModelVersionFactory, give_frames_real_images, make_prelabel

pytestmark = pytest.mark.django_db

SMALL_XA = "XA-MONO2-8-12x-catheter.dcm"


class FakePredictor:
    """Probabilities that follow from the image bytes (so that a frame always gets the same),
    with a ``shift`` to make a second model's differ. Records each call's batch."""

    def __init__(self, shift: float = 0.0) -> None:
        self.shift = shift
        self.batches: list[int] = []

    def predict(self, items, *, batch_size: int = 64, references=None) -> np.ndarray:
        items = list(items)
        self.batches.append(len(items))
        rows = []
        for data in items:
            rng = np.random.default_rng(int(hashlib.sha256(data).hexdigest()[:8], 16))
            logits = rng.normal(size=6) * 2 + self.shift * np.arange(6)
            exp = np.exp(logits - logits.max())
            rows.append(exp / exp.sum())
        return np.array(rows, dtype=np.float32)


@pytest.fixture
def version():
    return ModelVersionFactory(is_active=True, architecture="convnext_atto", version=1)


@pytest.fixture
def exams():
    """Two exams: 12 frames (sampled 0, 5, 10) and 2 loops of 5 frames (sampled 0)."""
    first = ExamFactory()
    CineLoopFactory(exam=first, frame_count=12)
    second = ExamFactory()
    CineLoopFactory.create_batch(2, exam=second, frame_count=5)
    return [first, second]


# --- uncertainty -----------------------------------------------------------------------------


def test_entropy_in_nats_and_margin_between_the_two_best():
    uniform = np.full((1, 6), 1 / 6)
    certain = np.eye(6)[:1]
    mixed = np.array([[0.5, 0.3, 0.1, 0.05, 0.03, 0.02]])

    entropy, margin = entropy_and_margin(np.vstack([uniform, certain, mixed]))

    assert entropy[0] == pytest.approx(math.log(6))
    assert margin[0] == pytest.approx(0.0)
    assert entropy[1] == pytest.approx(0.0)
    assert margin[1] == pytest.approx(1.0)
    assert entropy[2] == pytest.approx(-sum(p * math.log(p) for p in mixed[0]))
    assert margin[2] == pytest.approx(0.2)


# --- prelabel_exams --------------------------------------------------------------------------


def test_one_pre_label_per_frame_with_valid_probabilities_entropy_and_margin(exams, version):
    predictor = FakePredictor()
    seen: list[tuple[int, int]] = []

    count = prelabel_exams(
        exams, version, batch_size=4, predictor=predictor, progress=lambda done, total: seen.append((done, total))
    )

    assert count == 22 == PreLabel.objects.count()
    assert set(PreLabel.objects.values_list("frame_id", flat=True)) == set(Frame.objects.values_list("pk", flat=True))
    for row in PreLabel.objects.all():
        PreLabelProbabilities.model_validate(row.probabilities)
        # PostgreSQL's jsonb keeps keys in its own order: compare by class name.
        assert sorted(row.probabilities) == sorted(SIX_CLASSES)
        assert sum(row.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        values = np.array([list(row.probabilities.values())])
        entropy, margin = entropy_and_margin(values)
        assert row.entropy == pytest.approx(entropy[0], abs=1e-5)
        assert row.margin == pytest.approx(margin[0], abs=1e-5)
        assert 0 <= row.entropy <= math.log(6)
        assert 0 <= row.margin <= 1
    # Batches of at most 4 (22 = 5 x 4 + 2); progress after each.
    assert predictor.batches == [4, 4, 4, 4, 4, 2]
    assert seen == [(4, 22), (8, 22), (12, 22), (16, 22), (20, 22), (22, 22)]


def test_a_model_with_loop_context_stores_what_it_was_measured_with(exams):
    from inference.ml.keyframe.context import with_loop_context

    plain = ModelVersionFactory(config={"model": {"arch": "convnext_atto"}})
    in_context = ModelVersionFactory(
        config={"model": {"arch": "convnext_atto", "loop_context_window": 2, "keyframe_peak_ratio": 0.7}}
    )
    # Batches of 4 cut through the loops: the context must still see each loop whole.
    prelabel_exams(exams, plain, batch_size=4, predictor=FakePredictor())
    prelabel_exams(exams, in_context, batch_size=4, predictor=FakePredictor())

    for loop in CineLoop.objects.all():
        frames = list(loop.frames.order_by("index"))
        raw = np.array(
            [[PreLabel.objects.get(frame=f, model_version=plain).probabilities[c] for c in SIX_CLASSES] for f in frames]
        )
        stored = np.array(
            [
                [PreLabel.objects.get(frame=f, model_version=in_context).probabilities[c] for c in SIX_CLASSES]
                for f in frames
            ]
        )
        expected = with_loop_context(raw, [loop.pk] * len(frames), [f.index for f in frames], 2, 0.7)
        assert stored == pytest.approx(expected, abs=1e-5)
        # One laterality per loop.
        assert np.ptp(stored[:, :3].sum(axis=1)) < 1e-5


def test_running_twice_replaces_rather_than_duplicates(exams, version):
    prelabel_exams(exams, version, batch_size=8, predictor=FakePredictor())
    first = dict(PreLabel.objects.values_list("frame_id", "probabilities"))

    prelabel_exams(exams[:1], version, batch_size=8, predictor=FakePredictor(shift=1.0))

    assert PreLabel.objects.count() == 22
    second = dict(PreLabel.objects.values_list("frame_id", "probabilities"))
    changed = {frame_id for frame_id in first if first[frame_id] != second[frame_id]}
    assert changed == set(Frame.objects.filter(loop__exam=exams[0]).values_list("pk", flat=True))


def test_another_model_version_keeps_its_own_rows(exams, version):
    prelabel_exams(exams, version, predictor=FakePredictor())
    prelabel_exams(exams, ModelVersionFactory(), predictor=FakePredictor(shift=1.0))
    assert PreLabel.objects.count() == 44


def test_sampled_frames_only(exams, version):
    count = prelabel_exams(exams, version, frames="sampled", predictor=FakePredictor())
    assert count == 5 == PreLabel.objects.count()
    assert not PreLabel.objects.filter(frame__is_sampled=False).exists()


def test_a_predictor_that_returns_the_wrong_shape_fails_loudly(exams, version):
    class Broken(FakePredictor):
        def predict(self, items, *, batch_size=64, references=None):
            return super().predict(items)[:, :5]

    with pytest.raises(PrelabelError, match="probabilities"):
        prelabel_exams(exams, version, predictor=Broken())
    assert not PreLabel.objects.exists()


# --- what a job works on ---------------------------------------------------------------------


def test_no_active_model_is_a_clear_error(db):
    ModelVersionFactory(is_active=False)
    with pytest.raises(PrelabelError, match="No key-frame model is active"):
        resolve_model_version(None)


def test_a_named_version_wins_over_the_active_one(version):
    other = ModelVersionFactory()
    assert resolve_model_version(other.uuid) == other
    assert resolve_model_version(None) == version


def test_no_exams_named_means_those_the_model_has_not_pre_labelled(exams, version):
    ExamFactory()  # no frames: nothing to pre-label
    prelabel_exams(exams[:1], version, predictor=FakePredictor())
    make_prelabel(Frame.objects.filter(loop__exam=exams[1]).first(), ModelVersionFactory())  # another model's

    assert list(resolve_exams([], version)) == [exams[1]]
    assert list(resolve_exams([exams[0].uuid], version)) == [exams[0]]


def test_an_unknown_exam_is_named():
    with pytest.raises(PrelabelError, match="00000000-0000-0000-0000-000000000001"):
        resolve_exams(["00000000-0000-0000-0000-000000000001"], ModelVersionFactory())


# --- the job ---------------------------------------------------------------------------------


@pytest.fixture
def fake_model(monkeypatch):
    """The job's predictor, without torch: a FakePredictor, whatever the version."""
    predictor = FakePredictor()
    monkeypatch.setattr(prelabel, "load_predictor", lambda version, **options: predictor)
    return predictor


def test_the_job_pre_labels_picks_key_frames_and_reports(exams, version, fake_model, admin_user):
    job = start_job(JobKind.PRELABEL, {"exams": [str(exam.uuid) for exam in exams], "batch_size": 5}, admin_user)
    seen: list[float] = []

    job = run_job_here(job, on_progress=lambda j: seen.append(j.progress))

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert PreLabel.objects.filter(model_version=version).count() == 22
    metrics = job.metrics
    assert (metrics["exams"], metrics["frames"], metrics["model_label"]) == (2, 22, "convnext_atto v1")
    in_use = KeyFrame.objects.filter(excluded_at=None)
    assert metrics["key_frames"] == in_use.count()
    assert metrics["key_frames_per_exam_mean"] == pytest.approx(in_use.count() / 2)
    assert [row["frames"] for row in metrics["per_exam"]] == [12, 10]
    assert all(row.model_version == version for row in KeyFrame.objects.all())
    assert seen == sorted(seen)
    assert seen[-1] == 1.0
    assert len(set(seen)) > 3
    assert "12 frame(s) pre-labelled" in job.log_tail


def test_the_job_fails_with_the_reason_when_no_model_is_active(exams, fake_model):
    job = run_job_here(start_job(JobKind.PRELABEL, {}, None))

    assert job.status == JobStatus.FAILED
    assert "No key-frame model is active" in job.error
    assert not PreLabel.objects.exists()


# --- the command -----------------------------------------------------------------------------


def test_command_runs_the_job_and_prints_each_exam(exams, version, fake_model, capsys):
    call_command("prelabel", "--exam", str(exams[1].uuid), "--batch-size", "3")

    out = capsys.readouterr().out
    assert f"exam {exams[1].uuid}: 10 frames pre-labelled," in out
    assert out.strip().splitlines()[-1].startswith("exams=1 frames=10 key_frames=")
    assert Job.objects.get().status == JobStatus.SUCCEEDED
    assert not PreLabel.objects.filter(frame__loop__exam=exams[0]).exists()


def test_command_without_exams_takes_the_new_ones_and_all_takes_every_one(exams, version, fake_model, capsys):
    prelabel_exams(exams[:1], version, predictor=FakePredictor())

    call_command("prelabel")
    assert "exams=1 frames=10" in capsys.readouterr().out
    call_command("prelabel")
    assert "Nothing to pre-label" in capsys.readouterr().out
    call_command("prelabel", "--all", "--frames", "sampled")
    assert "exams=2 frames=5" in capsys.readouterr().out


def test_command_exits_non_zero_without_an_active_model(exams):
    with pytest.raises(CommandError, match="No key-frame model is active"):
        call_command("prelabel")
    assert not Job.objects.exists()


# --- after ingest ----------------------------------------------------------------------------


def report_of(*loops) -> IngestReport:
    return IngestReport(
        results=[IngestResult(f"file{n}.dcm", Outcome.INGESTED, "ok", loop=loop) for n, loop in enumerate(loops)]
        + [IngestResult("dup.dcm", Outcome.DUPLICATE, "seen")]
    )


def test_ingest_hook_queues_a_job_for_the_new_exams_only_with_an_active_model(exams, admin_user):
    loops = [exam.loops.first() for exam in exams]
    assert start_prelabel_after_ingest(report_of(*loops, loops[0]), admin_user) is None  # no model yet

    version = ModelVersionFactory(is_active=True)
    job = start_prelabel_after_ingest(report_of(*loops, loops[0]), admin_user)

    assert job is not None
    assert job.kind == JobKind.PRELABEL
    assert job.status == JobStatus.QUEUED
    assert job.parameters["exams"] == [str(exams[0].uuid), str(exams[1].uuid)]
    assert job.parameters["model_version"] == str(version.uuid)
    assert job.created_by == admin_user
    assert start_prelabel_after_ingest(report_of(), admin_user) is None  # nothing new


@pytest.fixture
def small_xa(xa_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / SMALL_XA
    shutil.copy(xa_dir / SMALL_XA, path)
    return path


@pytest.mark.parametrize("active", [False, True])
def test_ingest_command_queues_pre_labelling_when_a_model_is_active(small_xa, active, capsys):
    if active:
        ModelVersionFactory(is_active=True)

    call_command("ingest", str(small_xa))

    out = capsys.readouterr().out
    assert "1 ingested" in out
    exam = Exam.objects.get()
    if active:
        job = Job.objects.get()
        assert job.parameters["exams"] == [str(exam.uuid)]
        assert f"Pre-labelling job {job.uuid} queued" in out
    else:
        assert not Job.objects.exists()
        assert "Pre-labelling" not in out


@pytest.mark.parametrize("active", [False, True])
@pytest.mark.parametrize("route", ["page", "api"])
def test_upload_page_and_api_queue_pre_labelling_when_a_model_is_active(client, physician, small_xa, active, route):
    if active:
        ModelVersionFactory(is_active=True)
    client.force_login(physician)
    upload = SimpleUploadedFile(SMALL_XA, small_xa.read_bytes(), content_type="application/dicom")

    if route == "page":
        response = client.post(reverse("annotation:upload"), {"files": [upload]})
    else:
        response = client.post(reverse("api:ingest"), {"files": [upload]})

    assert response.status_code == 200
    assert Exam.objects.count() == 1
    assert Job.objects.filter(kind=JobKind.PRELABEL).count() == (1 if active else 0)
    if route == "page":
        assert ('data-testid="prelabel-job"' in response.content.decode()) is active


# --- with a real (tiny, random) model --------------------------------------------------------


@pytest.fixture
def exam_with_images():
    exam = ExamFactory()
    give_frames_real_images(CineLoopFactory(exam=exam, frame_count=8))
    return exam


def test_a_real_model_through_the_registry_pre_labels_every_frame(registered_keyframe_model, exam_with_images):
    count = prelabel_exams([exam_with_images], registered_keyframe_model, batch_size=3)
    first = dict(PreLabel.objects.values_list("frame_id", "probabilities"))
    again = prelabel_exams([exam_with_images], registered_keyframe_model, batch_size=8)

    assert count == again == 8
    assert PreLabel.objects.count() == 8  # the second run replaced the first
    for row in PreLabel.objects.all():
        PreLabelProbabilities.model_validate(row.probabilities)
        assert sum(row.probabilities.values()) == pytest.approx(1.0, abs=1e-4)
        assert row.predicted_class in SIX_CLASSES
        assert row.probabilities == pytest.approx(first[row.frame_id], abs=1e-5)  # batching changes nothing


def test_the_job_with_a_real_model(registered_keyframe_model, exam_with_images, admin_user):
    job = start_job(JobKind.PRELABEL, {"batch_size": 4, "device": "cpu"}, admin_user)  # no exams: the new ones

    job = run_job_here(job)

    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.metrics["model_version"] == str(registered_keyframe_model.uuid)
    assert (job.metrics["exams"], job.metrics["frames"]) == (1, 8)
    assert PreLabel.objects.filter(model_version=registered_keyframe_model).count() == 8
    assert job.metrics["key_frames"] == KeyFrame.objects.filter(exam=exam_with_images, excluded_at=None).count()


def test_a_model_reading_the_loop_reference_gets_each_loops_minimum_projection():
    from annotation.derivatives import minimum_projection

    exam = ExamFactory()
    loops = CineLoopFactory.create_batch(2, exam=exam, frame_count=5)
    for loop in loops:
        give_frames_real_images(loop)
    version = ModelVersionFactory(config={"model": {"arch": "convnext_atto", "loop_reference": True}})

    class Recording(FakePredictor):
        def __init__(self) -> None:
            super().__init__()
            self.references: list[bytes] = []

        def predict(self, items, *, batch_size=64, references=None):
            items = list(items)
            assert references is not None
            assert len(references) == len(items)
            self.references.extend(references)
            return super().predict(items, batch_size=batch_size)

    # Only the sampled frames are predicted; the projection is still made from every frame.
    predictor = Recording()
    count = prelabel_exams([exam], version, batch_size=3, frames="sampled", predictor=predictor)

    expected = {}
    for loop in loops:
        loop.refresh_from_db()
        assert loop.minimum_projection.name.startswith("loops/")
        expected[loop.pk] = minimum_projection(frame.image.read() for frame in loop.frames.order_by("index"))
        assert loop.minimum_projection.read() == expected[loop.pk]
    sampled = Frame.objects.filter(loop__exam=exam, is_sampled=True).order_by("loop_id", "index")
    assert count == len(predictor.references) == sampled.count()
    assert predictor.references == [expected[frame.loop_id] for frame in sampled]
