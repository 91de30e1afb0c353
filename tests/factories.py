"""factory-boy factories for the annotation models (no real pixels: files are tiny stand-ins)."""

from __future__ import annotations

import hashlib

import factory

from annotation.derivatives import StoredFiles
from annotation.models import CineLoop, ClinicalDocument, DocumentKind, DocumentLanguage, Exam, Frame, Patient


def _stored(prefix: str, extension: str, payload: bytes) -> str:
    return StoredFiles().save_bytes(prefix, extension, payload)


class PatientFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Patient

    pseudonym = factory.Sequence(lambda n: hashlib.sha256(f"patient-{n}".encode()).hexdigest())


class ExamFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Exam

    patient = factory.SubFactory(PatientFactory)
    study_instance_uid = factory.Sequence(lambda n: f"2.25.{1000 + n}")
    study_date = factory.Faker("date_object")
    patient_sex = "M"
    patient_age_years = 67


class CineLoopFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = CineLoop
        skip_postgeneration_save = True

    exam = factory.SubFactory(ExamFactory)
    sop_instance_uid = factory.Sequence(lambda n: f"2.25.{9_000_000 + n}")
    series_instance_uid = factory.Sequence(lambda n: f"2.25.{5_000_000 + n}")
    sop_class_uid = "1.2.840.10008.5.1.4.1.1.12.1"
    series_number = factory.Sequence(lambda n: n + 1)
    frame_count = 10
    rows = 512
    columns = 512
    bits_allocated = 8
    bits_stored = 8
    photometric_interpretation = "MONOCHROME2"
    transfer_syntax_uid = "1.2.840.10008.1.2.1"
    frame_time_ms = 66.7
    frame_timing_source = "FrameTime"
    positioner_primary_angle = -30.0
    positioner_secondary_angle = 20.0
    dicom_file = factory.LazyAttribute(lambda o: _stored("dicom", "dcm", o.sop_instance_uid.encode()))
    dicom_sha256 = factory.LazyAttribute(lambda o: hashlib.sha256(o.sop_instance_uid.encode()).hexdigest())

    @factory.post_generation
    def frames(self, create: bool, extracted: int | None, **kwargs: object) -> None:
        """``CineLoopFactory(frames=N)`` also creates N frames (default: frame_count)."""
        if not create:
            return
        count = self.frame_count if extracted is None else extracted
        Frame.objects.bulk_create(
            Frame(
                loop=self,
                index=i,
                time_offset_ms=i * self.frame_time_ms,
                intensity_mean=120.0 - i,
                intensity_variance=900.0 + i,
                is_sampled=i % 5 == 0,
                image=_stored("frames", "webp", f"{self.sop_instance_uid}-{i}".encode()),
            )
            for i in range(count)
        )


class ClinicalDocumentFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ClinicalDocument

    exam = factory.SubFactory(ExamFactory)
    kind = DocumentKind.PRE_PROCEDURE_REPORT
    language = DocumentLanguage.ENGLISH
    text = "Exertional chest pain; positive treadmill test. Coronary angiography indicated."


# --- inference: dataset snapshots, model versions, pre-labels ---------------------------------


class DatasetSnapshotFactory(factory.django.DjangoModelFactory):
    """A snapshot row without a real manifest (enough for a model version to point to)."""

    class Meta:
        model = "inference.DatasetSnapshot"

    name = factory.Sequence(lambda n: f"snapshot {n}")
    seed = 0
    manifest_path = factory.Sequence(lambda n: f"snapshots/{n:064x}.json")
    manifest_sha256 = factory.Sequence(lambda n: f"{n:064x}")
    frame_count = 0


class ModelVersionFactory(factory.django.DjangoModelFactory):
    """A key-frame CNN version with stand-in weights: for tests that need the row, not the
    model (``registered_keyframe_model`` in tests/conftest.py gives a real tiny one)."""

    class Meta:
        model = "inference.ModelVersion"

    kind = "keyframe_cnn"
    version = factory.Sequence(lambda n: n + 1)
    architecture = "convnext_atto"
    weights_path = factory.Sequence(lambda n: f"models/keyframe_cnn/{n:064x}.safetensors")
    weights_sha256 = factory.Sequence(lambda n: f"{n:064x}")
    snapshot = factory.SubFactory(DatasetSnapshotFactory)
    is_active = False


def six_class_probabilities(best: str = "LCA_better", p: float = 0.8) -> dict[str, float]:
    """Probabilities of the six classes with ``p`` on ``best`` and the rest spread evenly."""
    from annotation.models import SIX_CLASSES

    rest = (1.0 - p) / (len(SIX_CLASSES) - 1)
    return {name: (p if name == best else rest) for name in SIX_CLASSES}


def make_prelabel(frame: Frame, version: object, best: str = "LCA_better", p: float = 0.8) -> object:
    """A PreLabel of ``frame`` by ``version`` with its entropy and margin computed."""
    import math

    from annotation.models import PreLabel

    probabilities = six_class_probabilities(best, p)
    values = sorted(probabilities.values(), reverse=True)
    return PreLabel.objects.create(
        frame=frame,
        model_version=version,
        probabilities=probabilities,
        entropy=-sum(v * math.log(v) for v in values if v > 0),
        margin=values[0] - values[1],
    )


# --- inference: final labels for dataset snapshots --------------------------------------------


def _now() -> object:
    from django.utils import timezone

    return timezone.now()


class FinalLabelFactory(factory.django.DjangoModelFactory):
    """A final label (phantom by default: it needs no physician)."""

    class Meta:
        model = "annotation.FinalLabel"

    laterality = "LCA"
    category = "better"
    method = "phantom"
    decided_at = factory.LazyFunction(_now)
    note = "test ground truth"


def label_loop_frames(loop: CineLoop, classes: list[str]) -> list[object]:
    """Final labels for the first len(classes) frames of ``loop``, e.g. ["LCA_better", ...]."""
    frames = list(loop.frames.order_by("index")[: len(classes)])
    return [
        FinalLabelFactory(frame=frame, laterality=name.split("_")[0], category=name.split("_")[1])
        for frame, name in zip(frames, classes, strict=True)
    ]


# --- inference: jobs --------------------------------------------------------------------------


class JobFactory(factory.django.DjangoModelFactory):
    """A job row as the pages see it (no task queued; ``inference.jobs.start_job`` queues)."""

    class Meta:
        model = "inference.Job"

    kind = "prelabel"
    status = "queued"
    parameters = factory.LazyFunction(dict)


def give_frames_real_images(loop: CineLoop, size: int = 32) -> None:
    """Replace the stand-in bytes of ``loop``'s frames with real grayscale WebP images (a
    vessel-like dark band whose contrast rises and falls over the loop), for tests that run a
    real predictor over them."""
    import io

    import numpy as np
    from PIL import Image

    frames = list(loop.frames.order_by("index"))
    for frame in frames:
        contrast = np.sin(np.pi * (frame.index + 0.5) / max(len(frames), 1))
        y, x = np.mgrid[0:size, 0:size]
        band = np.exp(-(((x - y * 0.5 - size / 4) / (size / 10)) ** 2))
        pixels = np.clip(200 - 150 * contrast * band, 0, 255).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(pixels).save(buffer, format="WEBP", lossless=True)
        frame.image = _stored("frames", "webp", buffer.getvalue())
    Frame.objects.bulk_update(frames, ["image"])
