"""Exams as the product holds them: de-identified from the first byte.

Patient -> Exam (one DICOM study) -> CineLoop (one multi-frame XA object) -> Frame.
ClinicalDocument holds the free-text reports of an exam, per kind and language.
No field here ever holds a patient's name, ID, birth date or an original DICOM UID: the
patient is a keyed-hash pseudonym, dates are shifted per patient and UIDs are remapped
(see ``annotation.deid``).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.urls import reverse


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
