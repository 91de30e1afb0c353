"""Ingest of the real XA samples: what is stored, what is found again, what is never kept."""

from __future__ import annotations

import io
import itertools
from pathlib import Path

import numpy as np
import pydicom
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from annotation import derivatives
from annotation.ingest import Outcome, ingest_paths
from annotation.models import CineLoop, Frame, Patient

pytestmark = pytest.mark.django_db

# What the sample files carry about their patients and sites, and must never be stored.
ORIGINAL_IDENTIFIERS = {
    "0002.DCM": ["Rubo DEMO", "556342B", "1.3.12.2.1107.5.4.3.123456789012345", "1.3.12.2.1107.5.4.3.321890"],
    "XA-MONO2-8-12x-catheter.dcm": ["Community Hospital", "Anytown", "999.999.1.19941016"],
    "WG04": ["CompressedSamples", "20XA1", "1.3.6.1.4.1.5962.1"],
}


def stored_bytes(media_root: Path) -> list[tuple[Path, bytes]]:
    return [(path, path.read_bytes()) for path in media_root.rglob("*") if path.is_file()]


def test_ingests_every_sample_and_all_their_frames(xa_dir: Path) -> None:
    report = ingest_paths([xa_dir])

    ingested = [r for r in report.results if r.outcome == Outcome.INGESTED]
    assert len(ingested) == 11, [r.line for r in report.results]
    assert report.frames_ingested == 135
    assert report.ok
    assert CineLoop.objects.count() == 11
    assert Frame.objects.count() == 135
    # The README beside the samples is listed, not rejected.
    assert [r.outcome for r in report.results if r.name.endswith("README.md")] == [Outcome.SKIPPED]


def test_loop_of_the_real_rca_cine_keeps_what_the_pipeline_needs(xa_dir: Path) -> None:
    ingest_paths([xa_dir / "0002.DCM"])

    loop = CineLoop.objects.get()
    assert loop.frame_count == 96
    assert (loop.rows, loop.columns) == (512, 512)
    assert loop.frame_time_ms == pytest.approx(33.0)
    assert loop.frame_timing_source == "FrameTime"
    assert (loop.positioner_primary_angle, loop.positioner_secondary_angle) == (-32.0, 2.0)
    assert loop.projection_label == "RAO 32 / CRA 2"
    assert loop.transfer_syntax_uid == pydicom.uid.JPEGBaseline8Bit
    frames = list(loop.frames.order_by("index"))
    assert [f.index for f in frames] == list(range(96))
    assert frames[10].time_offset_ms == pytest.approx(330.0)
    # About the share of frames the study labelled per loop, and never two within 5 frames.
    sampled = [f.index for f in frames if f.is_sampled]
    assert 3 <= len(sampled) <= 30
    assert all(b - a >= 5 for a, b in itertools.pairwise(sampled))


def test_frame_derivative_is_the_decoded_frame_as_webp(xa_dir: Path, media_root: Path) -> None:
    ingest_paths([xa_dir / "derived" / "XA-MONO2-8-12x-catheter_uncompressed.dcm"])

    frame = Frame.objects.get(index=5)
    with Image.open(media_root / frame.image.name) as image:
        assert image.format == "WEBP"
        shown = np.asarray(image.convert("L"), dtype=np.int16)
    original = pydicom.dcmread(xa_dir / "derived" / "XA-MONO2-8-12x-catheter_uncompressed.dcm").pixel_array[5]
    # Lossy WebP at the default quality: close to the stored pixels, not equal.
    assert np.abs(shown - original).mean() < 2.0
    assert frame.intensity_mean == pytest.approx(float(original.mean()), abs=0.01)
    # Content-addressed: the name is the hash of the bytes, so the URL is immutable.
    digest = Path(frame.image.name).stem
    assert derivatives.content_name("frames", digest, "webp") == frame.image.name


def test_same_instance_twice_is_a_duplicate_and_stored_once(xa_dir: Path, media_root: Path) -> None:
    first = ingest_paths([xa_dir / "0002.DCM"])
    files_after_first = sorted(p for p in media_root.rglob("*") if p.is_file())

    second = ingest_paths([xa_dir / "0002.DCM"])

    assert [r.outcome for r in first.results] == [Outcome.INGESTED]
    assert [r.outcome for r in second.results] == [Outcome.DUPLICATE]
    assert str(first.results[0].loop.uuid) in second.results[0].message
    assert CineLoop.objects.count() == 1
    assert sorted(p for p in media_root.rglob("*") if p.is_file()) == files_after_first


def test_nothing_identifying_is_stored_in_files_or_database(xa_dir: Path, media_root: Path) -> None:
    ingest_paths([xa_dir])

    needles = [n.encode() for names in ORIGINAL_IDENTIFIERS.values() for n in names]
    for path, content in stored_bytes(media_root):
        for needle in needles:
            assert needle not in content, f"{needle!r} found in stored file {path}"
    dump = io.StringIO()
    call_command("dumpdata", "annotation", stdout=dump)
    for needle in needles:
        assert needle.decode() not in dump.getvalue(), f"{needle!r} found in the database dump"
    # The original UIDs are gone, the de-identified file says how it was de-identified.
    loop = CineLoop.objects.get(frame_count=96)
    stored = pydicom.dcmread(media_root / loop.dicom_file.name)
    assert stored.PatientIdentityRemoved == "YES"
    assert "Basic Application" in stored.DeidentificationMethod
    assert str(stored.SOPInstanceUID) == loop.sop_instance_uid
    assert stored.file_meta.MediaStorageSOPInstanceUID == stored.SOPInstanceUID
    assert stored.preamble == b"\x00" * 128


def test_deidentified_copy_keeps_pixels_and_acquisition_attributes(xa_dir: Path, media_root: Path) -> None:
    source = xa_dir / "XA-MONO2-8-12x-catheter.dcm"
    ingest_paths([source])

    loop = CineLoop.objects.get()
    stored = pydicom.dcmread(media_root / loop.dicom_file.name)
    original = pydicom.dcmread(source)
    assert stored.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert np.array_equal(stored.pixel_array, original.pixel_array)
    for keyword in ("FrameTime", "PositionerPrimaryAngle", "PositionerSecondaryAngle", "Rows", "Columns"):
        assert stored.get(keyword) == original.get(keyword), keyword


def test_two_exams_of_one_patient_stay_linked_with_their_interval(xa_dir: Path, tmp_path: Path) -> None:
    """Same patient ID, two studies 30 days apart: one pseudonymous patient, dates shifted
    by the same offset, and another patient shifted differently."""
    paths = []
    for number, (patient_id, study_date) in enumerate(
        [("PID-1", "20240101"), ("PID-1", "20240131"), ("PID-2", "20240101")]
    ):
        ds = pydicom.dcmread(xa_dir / "derived" / "XA-MONO2-8-12x-catheter_uncompressed.dcm")
        ds.PatientID = patient_id
        ds.StudyDate = study_date
        ds.StudyInstanceUID = pydicom.uid.generate_uid()
        ds.SOPInstanceUID = pydicom.uid.generate_uid()
        paths.append(tmp_path / f"study{number}.dcm")
        ds.save_as(paths[-1])

    ingest_paths(paths)

    first, second, other = (loop.exam for loop in CineLoop.objects.order_by("created_at").select_related("exam"))
    assert first.patient == second.patient != other.patient
    assert (second.study_date - first.study_date).days == 30
    assert first.study_date.isoformat() != "2024-01-01"
    assert other.study_date != first.study_date  # another patient, another offset
    assert Patient.objects.count() == 2


def test_wg04_compressed_files_decode_to_the_uncompressed_pixels(xa_dir: Path) -> None:
    from annotation.decoding import iter_stored_frames

    wg04 = xa_dir / "WG04"
    reference = next(iter_stored_frames(wg04 / "XA1_UNC")).astype(np.int32)
    assert reference.shape == (1024, 1024)
    for name in ("XA1_J2KR", "XA1_JLSL", "XA1_JPLL", "XA1_RLE"):
        decoded = next(iter_stored_frames(wg04 / name)).astype(np.int32)
        assert np.array_equal(decoded, reference), f"{name} is lossless and must match exactly"
    # Lossy: JPEG-LS near-lossless bounds the error per pixel; JPEG 2000 lossy does not, so
    # both are held to a maximum error and a root-mean-square error on the 10-bit range.
    for name, max_error, rms_error in (("XA1_JLSN", 4, 3.0), ("XA1_J2KI", 10, 2.0)):
        error = np.abs(next(iter_stored_frames(wg04 / name)).astype(np.int32) - reference)
        assert error.max() <= max_error, name
        assert np.sqrt((error.astype(np.float64) ** 2).mean()) <= rms_error, name


def test_command_prints_a_line_per_file_and_exits_zero(xa_dir: Path, capsys) -> None:
    call_command("ingest", str(xa_dir / "0002.DCM"), str(xa_dir / "0002.DCM"))

    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ingested")
    assert "0002.DCM" in out[0]
    assert out[1].startswith("duplicate")
    assert out[-1] == "1 ingested (96 frames), 1 duplicate, 0 rejected, 0 skipped"


def test_command_exits_non_zero_when_a_file_is_rejected(xa_dir: Path, tmp_path: Path, capsys) -> None:
    junk = tmp_path / "junk.dcm"
    junk.write_bytes(b"\x01\x02" * 300)

    with pytest.raises(CommandError) as raised:
        call_command("ingest", str(xa_dir / "0002.DCM"), str(junk))

    assert raised.value.returncode == 1
    out = capsys.readouterr().out
    assert "rejected  " in out
    assert "junk.dcm: not a DICOM file" in out
    assert CineLoop.objects.count() == 1  # the good file went in


def test_burned_in_annotation_is_flagged_for_review(xa_dir: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(xa_dir / "derived" / "XA-MONO2-8-12x-catheter_uncompressed.dcm")
    ds.BurnedInAnnotation = "YES"
    flagged = tmp_path / "burned.dcm"
    ds.save_as(flagged)

    report = ingest_paths([flagged])

    assert report.results[0].outcome == Outcome.INGESTED
    assert "burned-in annotation" in report.results[0].message
    assert CineLoop.objects.get().needs_burned_in_review


def test_frame_time_vector_takes_precedence(xa_dir: Path, tmp_path: Path) -> None:
    ds = pydicom.dcmread(xa_dir / "derived" / "0002_frames45-52_uncompressed.dcm")
    ds.FrameTimeVector = [0, 30, 30, 40, 40, 50, 50, 60]
    ds.FrameIncrementPointer = pydicom.tag.Tag("FrameTimeVector")
    ds.CineRate = 10
    path = tmp_path / "ftv.dcm"
    ds.save_as(path)

    ingest_paths([path])

    loop = CineLoop.objects.get()
    assert loop.frame_timing_source == "FrameTimeVector"
    assert [f.time_offset_ms for f in loop.frames.order_by("index")] == [0, 30, 60, 100, 140, 190, 240, 300]


@pytest.mark.parametrize(
    ("keep", "source", "frame_time"),
    [
        ("FrameTime", "FrameTime", 33.0),
        ("CineRate", "CineRate", 1000 / 25),
        ("RecommendedDisplayFrameRate", "RecommendedDisplayFrameRate", 1000 / 12),
        (None, "assumed", 1000 / 15),
    ],
)
def test_frame_timing_precedence(
    xa_dir: Path, tmp_path: Path, keep: str | None, source: str, frame_time: float
) -> None:
    ds = pydicom.dcmread(xa_dir / "derived" / "0002_frames45-52_uncompressed.dcm")
    values = {"FrameTime": 33, "CineRate": 25, "RecommendedDisplayFrameRate": 12}
    for keyword in values:
        if keyword in ds:
            del ds[keyword]
    order = list(values)
    if keep is not None:
        for keyword in order[order.index(keep) :]:
            setattr(ds, keyword, values[keyword])
    path = tmp_path / "timing.dcm"
    ds.save_as(path)

    ingest_paths([path])

    loop = CineLoop.objects.get()
    assert loop.frame_timing_source == source
    assert loop.frame_time_ms == pytest.approx(frame_time)
