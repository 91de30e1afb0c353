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
