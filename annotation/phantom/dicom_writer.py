"""Phantom runs written as X-ray angiography multi-frame DICOM, as a cath lab would send them.

Headers carry what real XA objects carry (SOP class, frame time, positioner angles,
source-detector distances, KVP, tube current, pixel spacing, field-of-view shape) and a fake
patient identity, institution and staff, so that de-identification is exercised on every
phantom exam. Nothing here depends on the clock: UIDs and dates come from the exam's seed, so
the same seed writes the same bytes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, XRayAngiographicImageStorage, generate_uid

from annotation.phantom.cohort import ExamPlan, LoopPlan

# pydicom's own UID root, with entropy from the phantom's seeds: deterministic, and unique
# enough that two cohorts never collide.
UID_PREFIX = "1.2.826.0.1.3680043.8.498."
MANUFACTURER = "CAG-VLM phantom"

FAMILY_NAMES = ("Yamada", "Sato", "Suzuki", "Takahashi", "Tanaka", "Watanabe", "Ito", "Nakamura", "Kobayashi",
                "Kato", "Smith", "Garcia", "Muller", "Rossi", "Kim")  # fmt: skip
GIVEN_NAMES = {
    "M": ("Taro", "Hiroshi", "Kenji", "Takashi", "Makoto", "Ichiro", "John", "Carlos", "Hans", "Min-jun"),
    "F": ("Hanako", "Yoko", "Keiko", "Akiko", "Yumi", "Sachiko", "Mary", "Lucia", "Anna", "Ji-woo"),
}
KANJI_FAMILY = {"Yamada": "山田", "Sato": "佐藤", "Suzuki": "鈴木", "Takahashi": "高橋", "Tanaka": "田中",
                "Watanabe": "渡辺", "Ito": "伊藤", "Nakamura": "中村", "Kobayashi": "小林", "Kato": "加藤"}  # fmt: skip
KANJI_GIVEN = {"Taro": "太郎", "Hiroshi": "博", "Kenji": "健二", "Takashi": "隆", "Makoto": "誠", "Ichiro": "一郎",
               "Hanako": "花子", "Yoko": "洋子", "Keiko": "恵子", "Akiko": "明子", "Yumi": "由美",
               "Sachiko": "幸子"}  # fmt: skip
INSTITUTIONS = (
    ("Hongo Heart Institute", "7-3-1 Hongo, Bunkyo-ku, Tokyo"),
    ("Sakura General Hospital", "2-1 Chuo, Chiba"),
    ("Minato Cardiovascular Center", "4-6 Shiba, Minato-ku, Tokyo"),
    ("Riverside Community Hospital", "100 River Road, Springfield"),
)
STAFF = ("Ono^Kazuki", "Mori^Emi", "Baker^Tom", "Fujita^Ryo", "Hayashi^Mai")


@dataclass(frozen=True)
class FakeIdentity:
    """Everything a real header would give away about a patient, invented."""

    patient_name: str
    patient_id: str
    birth_date: str
    sex: str
    institution: str
    institution_address: str
    referring_physician: str
    operator: str
    accession: str
    study_date: date


def fake_identity(plan: ExamPlan, rng: np.random.Generator) -> FakeIdentity:
    sex = plan.profile.sex
    family = str(rng.choice(FAMILY_NAMES))
    given = str(rng.choice(GIVEN_NAMES[sex]))
    name = f"{family}^{given}"
    if family in KANJI_FAMILY and given in KANJI_GIVEN:
        name += f"={KANJI_FAMILY[family]}^{KANJI_GIVEN[given]}"  # ideographic group, as Japanese PACS send
    study_date = date(2024, 1, 1) + timedelta(days=int(rng.integers(0, 900)))
    birth = study_date - timedelta(days=int(plan.profile.age * 365.25 + rng.integers(0, 365)))
    institution, address = INSTITUTIONS[int(rng.integers(len(INSTITUTIONS)))]
    return FakeIdentity(
        patient_name=name,
        patient_id=f"{int(rng.integers(10_000_000, 99_999_999))}",
        birth_date=birth.strftime("%Y%m%d"),
        sex=sex,
        institution=institution,
        institution_address=address,
        referring_physician=str(rng.choice(STAFF)),
        operator=str(rng.choice(STAFF)),
        accession=f"A{int(rng.integers(1_000_000, 9_999_999))}",
        study_date=study_date,
    )


def phantom_uid(*parts: object) -> str:
    """A UID derived from the seeds that name an object: the same seed, the same UID."""
    return generate_uid(prefix=UID_PREFIX, entropy_srcs=[str(p) for p in parts])


def stored_values(display: np.ndarray, bits_stored: int) -> np.ndarray:
    """Display image in [0, 1] -> stored integers of the loop's bit depth."""
    top = 2**bits_stored - 1
    dtype = np.uint8 if bits_stored <= 8 else np.uint16
    return np.rint(np.clip(display, 0.0, 1.0) * top).astype(dtype)


def write_loop(
    path: Path,
    plan: ExamPlan,
    loop_number: int,
    loop: LoopPlan,
    identity: FakeIdentity,
    frames: Iterable[np.ndarray],
) -> None:
    """Write one run. ``frames`` are display images in [0, 1], one (rows, columns) array each."""
    fmt = loop.pixel_format
    stored = [stored_values(frame, fmt.bits_stored) for frame in frames]
    if len(stored) != loop.frames:
        raise ValueError(f"expected {loop.frames} frames, got {len(stored)}")
    rows, columns = stored[0].shape

    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = RLELossless if fmt.rle else ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = XRayAngiographicImageStorage
    ds.SOPClassUID = XRayAngiographicImageStorage
    ds.StudyInstanceUID = phantom_uid(plan.cohort_seed, plan.number, "study")
    ds.SeriesInstanceUID = phantom_uid(plan.cohort_seed, plan.number, loop_number, "series")
    ds.SOPInstanceUID = phantom_uid(plan.cohort_seed, plan.number, loop_number, "instance")
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SpecificCharacterSet = "ISO_IR 192"  # UTF-8, for the ideographic name group

    # Patient and study: invented, and exactly what de-identification must remove.
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.IssuerOfPatientID = identity.institution
    ds.PatientBirthDate = identity.birth_date
    ds.PatientSex = identity.sex
    ds.PatientAge = f"{plan.profile.age:03d}Y"
    ds.InstitutionName = identity.institution
    ds.InstitutionAddress = identity.institution_address
    ds.ReferringPhysicianName = identity.referring_physician
    ds.OperatorsName = identity.operator
    ds.AccessionNumber = identity.accession
    ds.StudyID = f"{plan.number:04d}"
    study_day = identity.study_date.strftime("%Y%m%d")
    start = 9 * 3600 + plan.number % 7 * 1200 + loop_number * 95
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = ds.AcquisitionDate = study_day
    ds.StudyTime = f"{9:02d}0000"
    clock = f"{start // 3600:02d}{start % 3600 // 60:02d}{start % 60:02d}"
    ds.SeriesTime = ds.ContentTime = ds.AcquisitionTime = clock
    ds.AcquisitionDateTime = study_day + clock
    ds.StudyDescription = "Coronary angiography"
    ds.SeriesDescription = f"{loop.artery.value} {loop.view.name}"

    # Equipment and acquisition.
    ds.Modality = "XA"
    ds.Manufacturer = MANUFACTURER
    ds.ManufacturerModelName = "Digital coronary phantom"
    ds.SeriesNumber = loop_number + 1
    ds.InstanceNumber = 1
    ds.PatientOrientation = ""
    ds.ImageType = ["ORIGINAL", "PRIMARY", "SINGLE PLANE"]
    ds.PositionerMotion = "STATIC"
    ds.PositionerPrimaryAngle = f"{loop.view.primary_deg:g}"
    ds.PositionerSecondaryAngle = f"{loop.view.secondary_deg:g}"
    ds.DistanceSourceToDetector = f"{loop.geometry.sid_mm:g}"
    ds.DistanceSourceToPatient = f"{loop.geometry.sod_mm:g}"
    ds.ImagerPixelSpacing = [f"{loop.geometry.detector_pixel_mm:g}"] * 2
    ds.EstimatedRadiographicMagnificationFactor = f"{loop.geometry.sid_mm / loop.geometry.sod_mm:.4f}"
    ds.FieldOfViewShape = "ROUND"
    ds.IntensifierSize = f"{rows * loop.geometry.detector_pixel_mm:.0f}"
    ds.RadiationSetting = "GR"
    ds.KVP = f"{78 + loop_number % 5 * 2}"
    ds.XRayTubeCurrent = 600 + 20 * (loop_number % 4)
    ds.ExposureTime = 6
    ds.HeartRate = round(loop.heart_rate_bpm)
    frame_time = 1000.0 / loop.frame_rate
    ds.FrameTime = f"{frame_time:.2f}"
    ds.CineRate = round(loop.frame_rate)
    ds.RecommendedDisplayFrameRate = round(loop.frame_rate)
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTime")
    ds.NumberOfFrames = len(stored)
    ds.BurnedInAnnotation = "NO"

    # Image pixel module. XA pixel values are log-scaled intensities (PixelIntensityRelationship).
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.Rows, ds.Columns = rows, columns
    ds.BitsAllocated = fmt.bits_allocated
    ds.BitsStored = fmt.bits_stored
    ds.HighBit = fmt.bits_stored - 1
    ds.PixelRepresentation = 0
    ds.PixelIntensityRelationship = "LOG"
    ds.LossyImageCompression = "00"
    if fmt.bits_stored > 8:
        top = 2**fmt.bits_stored
        ds.WindowCenter = f"{top / 2:g}"
        ds.WindowWidth = f"{top:g}"

    if fmt.rle:
        encoder = get_encoder(RLELossless)
        encoded = [
            encoder.encode(frame, rows=rows, columns=columns, samples_per_pixel=1, number_of_frames=1,
                           bits_allocated=fmt.bits_allocated, bits_stored=fmt.bits_stored,
                           pixel_representation=0, photometric_interpretation="MONOCHROME2")
            for frame in stored
        ]  # fmt: skip
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds["PixelData"].is_undefined_length = True
    else:
        ds.PixelData = np.stack(stored).tobytes()
        ds["PixelData"].VR = "OB" if fmt.bits_allocated == 8 else "OW"
    ds.save_as(path, enforce_file_format=True)
