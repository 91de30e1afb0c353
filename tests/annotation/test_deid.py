"""De-identification of headers: the profile, its options and the keyed pseudonyms."""

from __future__ import annotations

from pathlib import Path

import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

from annotation import deid

UNCOMPRESSED = Path("derived") / "XA-MONO2-8-12x-catheter_uncompressed.dcm"


@pytest.fixture
def header(xa_dir: Path) -> Dataset:
    ds = pydicom.dcmread(xa_dir / UNCOMPRESSED, stop_before_pixels=True)
    ds.PatientName = "Yamada^Taro=山田^太郎"
    ds.PatientID = "MRN-0042"
    ds.PatientBirthDate = "19550310"
    ds.StudyDate = "20240105"
    ds.AcquisitionDateTime = "20240105101530"
    ds.PatientSex = "M"
    ds.AccessionNumber = "ACC-77"
    ds.OperatorsName = "Tech^Tom"
    ds.KVP = 80
    ds.DistanceSourceToDetector = 1100
    ds.ImagerPixelSpacing = [0.2, 0.2]
    ds.add_new(0x00091010, "LO", "vendor secret")  # private tag (odd group)
    referenced = Dataset()
    referenced.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
    referenced.ReferencedSOPClassUID = pydicom.uid.XRayAngiographicImageStorage
    nested_person = Dataset()
    nested_person.PersonName = "Nurse^Nancy"
    nested_person.ObservationDateTime = "20240105"
    referenced.ContentSequence = Sequence([nested_person])
    ds.SourceImageSequence = Sequence([referenced])
    return ds


def test_identity_is_removed_and_what_the_pipeline_needs_is_kept(header: Dataset) -> None:
    original_study_uid = str(header.StudyInstanceUID)

    result = deid.deidentify(header)

    assert str(header.PatientName) == f"ANON^{result.patient.pseudonym[:8]}"
    assert header.PatientID == result.patient.pseudonym[:16]
    assert header.get("PatientBirthDate", "") == ""
    assert header.get("OperatorsName", "") in ("", None)
    assert header.get("AccessionNumber", "") in ("", None)
    assert "InstitutionName" not in header or header.InstitutionName != "Community Hospital"
    assert 0x00091010 not in header
    assert str(header.StudyInstanceUID).startswith("2.25.")
    assert header.StudyInstanceUID != original_study_uid
    # Kept: acquisition geometry and timing, the characteristics the reports need.
    assert float(header.KVP) == 80
    assert float(header.DistanceSourceToDetector) == 1100
    assert [float(v) for v in header.ImagerPixelSpacing] == [0.2, 0.2]
    assert float(header.FrameTime) == 33
    assert float(header.PositionerPrimaryAngle) == 77
    assert header.PatientSex == "M"
    assert result.patient_sex == "M"
    assert result.patient_age_years == 68
    assert header.PatientAge == "068Y"
    assert header.PatientIdentityRemoved == "YES"
    assert [item.CodeValue for item in header.DeidentificationMethodCodeSequence] == ["113100", "113107", "113108"]


def test_nothing_original_survives_at_any_depth(header: Dataset) -> None:
    deid.deidentify(header)

    values = [str(element.value) for element in header.iterall()]
    for original in ("1.2.3.4.5.6", "Nurse^Nancy", "Yamada", "MRN-0042", "ACC-77", "20240105", "19550310"):
        assert not any(original in value for value in values), original


def test_sweep_remaps_uids_and_shifts_dates_inside_sequences() -> None:
    """What the profile's table leaves in nested items, the sweep catches."""
    ds = Dataset()
    item = Dataset()
    item.ReferencedSOPInstanceUID = "1.2.3.4.5.6"
    item.ReferencedSOPClassUID = pydicom.uid.XRayAngiographicImageStorage
    item.PersonName = "Nurse^Nancy"
    item.ObservationDateTime = "20240105120000"
    ds.ReferencedImageSequence = Sequence([item])

    deid._sweep(ds, shift_days=-10)

    swept = ds.ReferencedImageSequence[0]
    assert swept.ReferencedSOPInstanceUID == deid.remap_uid("1.2.3.4.5.6")
    assert swept.ReferencedSOPClassUID == pydicom.uid.XRayAngiographicImageStorage  # public UID kept
    assert swept.PersonName == ""
    assert swept.ObservationDateTime == "20231226120000"


def test_dates_shift_by_one_offset_per_patient(header: Dataset) -> None:
    result = deid.deidentify(header)

    assert -deid.MAX_SHIFT_DAYS <= result.patient.date_shift_days <= -deid.MIN_SHIFT_DAYS
    assert header.StudyDate == deid.shift_da("20240105", result.patient.date_shift_days)
    assert str(header.AcquisitionDateTime)[8:] == "101530"
    assert result.study_date.isoformat().replace("-", "") == header.StudyDate


def test_pseudonyms_are_keyed(header: Dataset, settings) -> None:
    same_patient = deid.patient_key(header)
    assert deid.patient_key(header) == same_patient  # deterministic

    settings.PSEUDONYMISATION_KEY = "another hospital's key"
    other_key = deid.patient_key(header)
    assert other_key.pseudonym != same_patient.pseudonym
    assert deid.remap_uid("1.2.3") != "1.2.3"
    assert len(deid.remap_uid("1.2.3")) <= 64


def test_identifier_digests_cover_every_name_part_and_id(header: Dataset) -> None:
    key = deid.patient_key(header)
    for token in ("yamada", "taro", "山田", "太郎", "mrn-0042", "acc-77"):
        assert deid.keyed_digest("identifier", token) in key.identifier_digests, token
    # The digests reveal nothing by themselves.
    assert not any("yamada" in digest for digest in key.identifier_digests)


def test_patient_without_id_is_not_merged_with_others(header: Dataset) -> None:
    del header.PatientID
    first = deid.patient_key(header)
    header.StudyInstanceUID = "1.2.3.999"
    assert deid.patient_key(header).pseudonym != first.pseudonym
