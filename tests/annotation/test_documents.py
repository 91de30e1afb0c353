"""Clinical documents: identifiers known from DICOM are scrubbed from free text before saving."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from pydicom.dataset import Dataset

from annotation.deid import patient_key
from annotation.documents import create_clinical_document, scrub_identifiers, validate_document
from annotation.models import ClinicalDocument, DocumentKind, DocumentLanguage
from tests.factories import ClinicalDocumentFactory, ExamFactory, PatientFactory


def digests_from_header(name: str, patient_id: str) -> list[str]:
    """The digests ingest would store for a patient with this DICOM PatientName and ID."""
    ds = Dataset()
    ds.SpecificCharacterSet = ["", "ISO 2022 IR 87"]
    ds.PatientName = name
    ds.PatientID = patient_id
    return list(patient_key(ds).identifier_digests)


@pytest.fixture
def digests(db) -> list[str]:
    # Alphabetic and ideographic groups of one PN, as Japanese scanners write them.
    return digests_from_header("Rubo DEMO=山田^太郎", "556342B")


@pytest.fixture
def exam(digests):
    return ExamFactory(patient=PatientFactory(identifier_digests=digests))


def test_latin_name_and_id_are_redacted_and_nothing_else_changes(digests):
    text, count = scrub_identifiers("Patient Rubo Demo (ID 556342B) has angina", digests)

    assert text == "Patient [REDACTED] [REDACTED] (ID [REDACTED]) has angina"
    assert count == 3


def test_japanese_name_is_redacted_inside_unspaced_text(digests):
    text, count = scrub_identifiers("山田太郎様、労作性狭心症", digests)

    assert text == "[REDACTED][REDACTED]様、労作性狭心症"
    assert count == 2


def test_text_without_identifiers_is_unchanged(digests):
    original = "Exertional chest pain; positive treadmill test. 労作性狭心症の疑い。"

    assert scrub_identifiers(original, digests) == (original, 0)


@pytest.mark.parametrize(
    "text",
    [
        "Angiography demonstrated a 90% stenosis of the RCA.",
        "Demonstration case; rubout of the old report.",
        "Reference 5563420 and 556342BX are other numbers.",
    ],
)
def test_words_that_merely_contain_an_identifier_are_kept(digests, text):
    assert scrub_identifiers(text, digests) == (text, 0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # End of sentence: the full stop stays.
        ("Referred by his GP, Mr Demo.", "Referred by his GP, Mr [REDACTED]."),
        # Upper case and full-width characters, as Japanese input methods type them.
        ("RUBO, ID：５５６３４２Ｂ", "[REDACTED], ID：[REDACTED]"),
        # Parts joined by a hyphen.
        ("Demo-san was seen today", "[REDACTED]-san was seen today"),
        # A Latin ID directly after Japanese text.
        ("患者ID 556342B、山田様", "患者ID [REDACTED]、[REDACTED]様"),
    ],
)
def test_identifiers_in_their_usual_disguises_are_redacted(digests, text, expected):
    assert scrub_identifiers(text, digests)[0] == expected


def test_id_written_with_a_separator_is_redacted_whole(db):
    digests = digests_from_header("Sato^Hanako", "12/3456")

    assert scrub_identifiers("MRN 12/3456 on file", digests) == ("MRN [REDACTED] on file", 1)


def test_patient_without_digests_leaves_text_alone():
    assert scrub_identifiers("Rubo Demo 556342B", []) == ("Rubo Demo 556342B", 0)


def test_document_is_stored_scrubbed(exam, physician):
    document = create_clinical_document(
        exam=exam,
        kind=DocumentKind.PRE_PROCEDURE_REPORT,
        language=DocumentLanguage.JAPANESE,
        text="山田太郎様（ID 556342B）、労作性狭心症。",
        author=physician,
    )

    stored = ClinicalDocument.objects.get(pk=document.pk)
    assert stored.text == "[REDACTED][REDACTED]様（ID [REDACTED]）、労作性狭心症。"
    assert stored.author == physician
    assert stored.source == "manual"


def test_second_document_of_same_kind_and_language_is_refused(exam):
    ClinicalDocumentFactory(exam=exam, kind=DocumentKind.DIAGNOSIS_SUMMARY, language=DocumentLanguage.ENGLISH)

    with pytest.raises(ValidationError, match="already has a diagnosis summary in English"):
        create_clinical_document(
            exam=exam,
            kind=DocumentKind.DIAGNOSIS_SUMMARY,
            language=DocumentLanguage.ENGLISH,
            text="Two-vessel disease.",
        )
    assert ClinicalDocument.objects.filter(exam=exam).count() == 1


@pytest.mark.parametrize(
    ("kind", "language", "field"),
    [("discharge_letter", "en", "kind"), ("pre_procedure_report", "de", "language")],
)
def test_unknown_kind_or_language_is_refused(exam, kind, language, field):
    with pytest.raises(ValidationError) as raised:
        create_clinical_document(exam=exam, kind=kind, language=language, text="Stable angina.")

    assert field in raised.value.message_dict
    assert not ClinicalDocument.objects.exists()


def test_empty_text_is_refused(exam):
    with pytest.raises(ValidationError):
        create_clinical_document(exam=exam, kind=DocumentKind.TREATMENT_PLAN, language="en", text="")
    assert not ClinicalDocument.objects.exists()


def test_validation_records_who_and_when(exam, cardiologist):
    document = ClinicalDocumentFactory(exam=exam)

    validate_document(document, cardiologist)

    document.refresh_from_db()
    assert document.validated_by == cardiologist
    assert document.validated_at is not None
    assert document.is_validated
