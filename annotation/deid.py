"""De-identification at the door, before the first byte of a file is stored.

Profile: DICOM PS3.15 Annex E Basic Application Level Confidentiality Profile, as tabulated
by the maintained ``dicom-anonymizer`` package (its 2026c table of the standard), with these
options and product choices:

- Retain Longitudinal Temporal Information with Modified Dates: every date and date-time is
  shifted back by a whole number of days, one offset per patient derived from a keyed hash,
  so intervals within and between a patient's exams are kept. Times of day follow the
  table (replaced by a dummy time).
- Retain Patient Characteristics: sex, age, size and weight are kept (the reports need age and
  sex). The birth date is removed; the age at the study is kept instead.
- Consistent pseudonyms: PatientID becomes an HMAC-SHA256 of the issuer and original ID under
  the deployment's ``PSEUDONYMISATION_KEY``; the two exams of one patient stay linked.
- UIDs are remapped to ``2.25.`` UIDs derived from a keyed hash of the original, so the same
  instance always maps to the same new UID (this is what makes re-ingest a duplicate).
- Private tags are removed (no Retain Safe Private option).
- Kept, because the pipeline reads them and they identify nobody: frame timing, positioner
  angles, pixel spacing, source-detector geometry, acquisition parameters, BurnedInAnnotation.

A belt-and-braces pass then walks the whole dataset, nested sequences included: any person
name left is emptied, any date left is shifted and any non-standard UID left is remapped.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import pydicom
from dicomanonymizer.simpledicomanonymizer import anonymize_dataset, initialize_actions
from django.conf import settings
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.uid import UID

PROFILE_TABLE = "dicomfields_2026c"
DEIDENTIFICATION_METHOD = (
    "PS3.15 Basic Application Level Confidentiality Profile (dicom-anonymizer dicomfields_2026c); "
    "Retain Longitudinal Temporal Information with Modified Dates; Retain Patient Characteristics; "
    "keyed-hash pseudonyms and UIDs; private tags removed"
)
# PS3.16 CID 7050 codes of the profile and options applied.
DEIDENTIFICATION_CODES = (
    ("113100", "Basic Application Confidentiality Profile"),
    ("113107", "Retain Longitudinal Temporal Information Modified Dates Option"),
    ("113108", "Retain Patient Characteristics Option"),
)

# Shifts are 30 days to about 10 years into the past: large enough that a shifted date says
# nothing, small enough that ages stay plausible.
MIN_SHIFT_DAYS = 30
MAX_SHIFT_DAYS = 3650

PATIENT_CHARACTERISTICS = ("PatientSex", "PatientAge", "PatientSize", "PatientWeight")


def keyed_digest(purpose: str, *parts: str) -> str:
    """HMAC-SHA256 under the deployment's pseudonymisation key, hex-encoded."""
    message = "\x1f".join((purpose, *parts)).encode("utf-8")
    return hmac.new(settings.PSEUDONYMISATION_KEY.encode("utf-8"), message, hashlib.sha256).hexdigest()


def remap_uid(original: str) -> str:
    """The same original UID always maps to the same new one under one key: a ``2.25.`` UID
    (PS3.5 B.2, UUID-derived) from the first 128 bits of the keyed hash."""
    return f"2.25.{int(keyed_digest('uid', str(original))[:32], 16)}"


def normalise_identifier(value: str) -> str:
    return unicodedata.normalize("NFKC", value).strip().casefold()


_SPLIT_NAME = re.compile(r"[\^=\s,.]+")


def identifier_tokens(ds: Dataset) -> set[str]:
    """The strings that identify this patient in free text: name parts (in every character
    set the PN holds), IDs and the accession number."""
    tokens: set[str] = set()
    name = str(ds.get("PatientName", "") or "")
    for part in _SPLIT_NAME.split(name):
        part = normalise_identifier(part)
        # One-character Latin fragments (initials) would redact every "a" in a report;
        # CJK name parts are often one or two characters and are kept.
        if len(part) >= 2 or (part and not part.isascii()):
            tokens.add(part)
    for keyword in ("PatientID", "AccessionNumber", "OtherPatientIDs"):
        value = ds.get(keyword)
        values = value if isinstance(value, pydicom.multival.MultiValue | list) else [value]
        for item in values:
            if item and normalise_identifier(str(item)):
                tokens.add(normalise_identifier(str(item)))
    return tokens


@dataclass(frozen=True)
class PatientKey:
    pseudonym: str
    date_shift_days: int
    identifier_digests: tuple[str, ...]


def patient_key(ds: Dataset) -> PatientKey:
    patient_id = normalise_identifier(str(ds.get("PatientID", "") or ""))
    issuer = normalise_identifier(str(ds.get("IssuerOfPatientID", "") or ""))
    if patient_id:
        pseudonym = keyed_digest("patient", issuer, patient_id)
    else:
        # No ID: the patient can only be recognised within this study.
        pseudonym = keyed_digest("patient-without-id", str(ds.get("StudyInstanceUID", "")))
    shift = MIN_SHIFT_DAYS + int(keyed_digest("date-shift", pseudonym), 16) % (MAX_SHIFT_DAYS - MIN_SHIFT_DAYS)
    digests = tuple(sorted(keyed_digest("identifier", token) for token in identifier_tokens(ds)))
    return PatientKey(pseudonym=pseudonym, date_shift_days=-shift, identifier_digests=digests)


@dataclass(frozen=True)
class DeidentifiedHeader:
    patient: PatientKey
    study_date: date | None
    patient_sex: str
    patient_age_years: int | None
    burned_in_annotation: str


def shift_da(value: str, days: int) -> str:
    parsed = datetime.strptime(value.strip()[:8], "%Y%m%d")
    try:
        return (parsed + timedelta(days=days)).strftime("%Y%m%d")
    except OverflowError:  # e.g. the profile's dummy date 00010101
        raise ValueError(f"date {value!r} cannot be shifted") from None


def shift_dt(value: str, days: int) -> str:
    value = value.strip()
    if len(value) < 8:
        return ""
    return shift_da(value[:8], days) + value[8:]


def _age_years(ds: Dataset) -> int | None:
    age = str(ds.get("PatientAge", "") or "")
    match = re.fullmatch(r"(\d{3})([DWMY])", age)
    if match:
        number, unit = int(match.group(1)), match.group(2)
        return {"Y": number, "M": number // 12, "W": number // 52, "D": number // 365}[unit]
    birth, study = str(ds.get("PatientBirthDate", "") or ""), str(ds.get("StudyDate", "") or "")
    try:
        born, seen = datetime.strptime(birth[:8], "%Y%m%d"), datetime.strptime(study[:8], "%Y%m%d")
    except ValueError:
        return None
    years = seen.year - born.year - ((seen.month, seen.day) < (born.month, born.day))
    return years if 0 <= years < 130 else None


def deidentify(ds: Dataset) -> DeidentifiedHeader:
    """De-identify ``ds`` in place (header only) and say what the product keeps of it."""
    key = patient_key(ds)
    age = _age_years(ds)

    def keep(dataset: Dataset, tag: tuple[int, int]) -> None:
        return None

    def set_value(value: str):
        def action(dataset: Dataset, tag: tuple[int, int]) -> None:
            if tag in dataset:
                dataset[tag].value = value

        return action

    # Dates and UIDs are left to the sweep below, which shifts and remaps them once, at any
    # depth; the profile table decides every other attribute.
    rules: dict[tuple[int, int], object] = {}
    for tag in initialize_actions(PROFILE_TABLE):
        if len(tag) == 2 and tag in _DATE_AND_UID_TAGS:
            rules[tag] = keep
    rules[(0x0010, 0x0030)] = _empty  # PatientBirthDate: the age is kept instead
    rules[(0x0010, 0x0020)] = set_value(key.pseudonym[:16])  # PatientID
    rules[(0x0010, 0x0010)] = set_value(f"ANON^{key.pseudonym[:8]}")  # PatientName
    for keyword in PATIENT_CHARACTERISTICS:
        rules[_tag_tuple(keyword)] = keep
    rules[_tag_tuple("BurnedInAnnotation")] = keep

    anonymize_dataset(ds, extra_anonymization_rules=rules, delete_private_tags=True)
    _sweep(ds, key.date_shift_days)
    # The 128-byte preamble is free-form and vendors write their names (and worse) into it.
    if getattr(ds, "preamble", None):
        ds.preamble = b"\x00" * 128
    if age is not None and not ds.get("PatientAge"):
        ds.PatientAge = f"{age:03d}Y"
    _record_method(ds)

    study_date = None
    if ds.get("StudyDate"):
        try:
            study_date = datetime.strptime(str(ds.StudyDate)[:8], "%Y%m%d").date()
        except ValueError:
            study_date = None
    sex = str(ds.get("PatientSex", "") or "").upper()[:1]
    return DeidentifiedHeader(
        patient=key,
        study_date=study_date,
        patient_sex=sex if sex in {"M", "F", "O"} else "",
        patient_age_years=age,
        burned_in_annotation=str(ds.get("BurnedInAnnotation", "") or "").upper(),
    )


def _tag_tuple(keyword: str) -> tuple[int, int]:
    tag = pydicom.datadict.tag_for_keyword(keyword)
    assert tag is not None, keyword
    return tag >> 16, tag & 0xFFFF


def _date_and_uid_tags() -> frozenset[tuple[int, int]]:
    tags = set()
    for tag in initialize_actions(PROFILE_TABLE):
        if len(tag) != 2:
            continue  # repeating groups (curves, overlays): the profile's own action stands
        try:
            if dictionary_VR(tag) in ("DA", "DT", "UI"):
                tags.add(tag)
        except KeyError:
            continue
    return frozenset(tags)


_DATE_AND_UID_TAGS = _date_and_uid_tags()


def _empty(dataset: Dataset, tag: tuple[int, int]) -> None:
    if tag in dataset:
        dataset[tag].value = ""


def _is_standard_uid(value: str) -> bool:
    """SOP classes, transfer syntaxes, coding schemes: public UIDs that identify nobody."""
    return UID(value).name != value


def _remap_element(element: pydicom.DataElement) -> None:
    if isinstance(element.value, pydicom.multival.MultiValue | list):
        element.value = [v if _is_standard_uid(v) else remap_uid(v) for v in element.value]
    elif not _is_standard_uid(str(element.value)):
        element.value = remap_uid(str(element.value))


def _sweep(ds: Dataset, shift_days: int) -> None:
    """One pass over every element, nested sequences included: remap each UID once, shift
    each date once, and empty any person name the table did not reach."""

    def visit(dataset: Dataset, element: pydicom.DataElement) -> None:
        if element.value in (None, "") or isinstance(element.value, Sequence):
            return
        if element.VR == "UI":
            _remap_element(element)
        elif element.VR in ("DA", "DT"):
            shift = shift_da if element.VR == "DA" else shift_dt
            try:
                element.value = shift(str(element.value), shift_days)
            except ValueError:
                element.value = ""  # an unparseable date cannot be shifted safely
        elif element.VR == "PN" and not (dataset is ds and element.tag == 0x00100010):
            element.value = ""

    ds.walk(visit)
    # The file meta must name the new instance (it is read separately from the data set).
    if "SOPInstanceUID" in ds:
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID


def _record_method(ds: Dataset) -> None:
    ds.PatientIdentityRemoved = "YES"
    ds.DeidentificationMethod = DEIDENTIFICATION_METHOD[:64]
    codes = []
    for value, meaning in DEIDENTIFICATION_CODES:
        item = Dataset()
        item.CodeValue = value
        item.CodingSchemeDesignator = "DCM"
        item.CodeMeaning = meaning
        codes.append(item)
    ds.DeidentificationMethodCodeSequence = Sequence(codes)
    ds.LongitudinalTemporalInformationModified = "MODIFIED"
