"""Bad input gets a clear message and leaves nothing behind: no row, no stored file."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import pydicom
import pytest
from PIL import Image
from pydicom.encaps import encapsulate

from annotation import decoding, ingest
from annotation.ingest import Outcome, ingest_paths
from annotation.models import CineLoop, Exam, Frame, Patient

pytestmark = pytest.mark.django_db

UNCOMPRESSED = Path("derived") / "XA-MONO2-8-12x-catheter_uncompressed.dcm"


def assert_nothing_stored(media_root: Path) -> None:
    assert (Patient.objects.count(), Exam.objects.count(), CineLoop.objects.count(), Frame.objects.count()) == (
        0,
        0,
        0,
        0,
    )
    assert [p for p in media_root.rglob("*") if p.is_file()] == []


def rejected_message(path: Path) -> str:
    report = ingest_paths([path])
    assert [r.outcome for r in report.results] == [Outcome.REJECTED], [r.line for r in report.results]
    assert not report.ok
    return report.results[0].message


def edited_sample(xa_dir: Path, tmp_path: Path, name: str, **attributes: object) -> Path:
    ds = pydicom.dcmread(xa_dir / UNCOMPRESSED)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    path = tmp_path / name
    ds.save_as(path)
    return path


def test_random_bytes(tmp_path: Path, media_root: Path) -> None:
    path = tmp_path / "random.dcm"
    path.write_bytes(bytes(range(256)) * 40)
    assert "not a DICOM file" in rejected_message(path)
    assert_nothing_stored(media_root)


def test_empty_file(tmp_path: Path, media_root: Path) -> None:
    path = tmp_path / "empty.dcm"
    path.write_bytes(b"")
    assert rejected_message(path) == "the file is empty"
    assert_nothing_stored(media_root)


def test_png_renamed_dcm(tmp_path: Path, media_root: Path) -> None:
    path = tmp_path / "picture.dcm"
    Image.new("L", (64, 64), 128).save(path, format="PNG")
    assert "not a DICOM file" in rejected_message(path)
    assert_nothing_stored(media_root)


def test_cut_off_in_native_pixel_data(xa_dir: Path, tmp_path: Path, media_root: Path) -> None:
    content = (xa_dir / UNCOMPRESSED).read_bytes()
    path = tmp_path / "truncated.dcm"
    path.write_bytes(content[: len(content) - 512 * 512 * 3])
    assert "pixel data is cut off" in rejected_message(path)
    assert_nothing_stored(media_root)


def test_cut_off_in_compressed_pixel_data(xa_dir: Path, tmp_path: Path, media_root: Path) -> None:
    content = (xa_dir / "0002.DCM").read_bytes()
    path = tmp_path / "truncated-jpeg.dcm"
    path.write_bytes(content[: len(content) // 2])
    assert "compressed pixel data is cut off" in rejected_message(path)
    assert_nothing_stored(media_root)


def test_dicom_without_pixel_data(xa_dir: Path, tmp_path: Path, media_root: Path) -> None:
    ds = pydicom.dcmread(xa_dir / UNCOMPRESSED)
    del ds.PixelData
    path = tmp_path / "no-pixels.dcm"
    ds.save_as(path)
    assert "no pixel data" in rejected_message(path)
    assert_nothing_stored(media_root)


def test_ct_image(xa_dir: Path, tmp_path: Path, media_root: Path) -> None:
    path = edited_sample(xa_dir, tmp_path, "ct.dcm", Modality="CT", SOPClassUID=pydicom.uid.CTImageStorage)
    assert rejected_message(path) == "not an X-ray angiography image: modality CT, CT Image Storage"
    assert_nothing_stored(media_root)


def test_number_of_frames_disagrees_with_pixel_data(xa_dir: Path, tmp_path: Path, media_root: Path) -> None:
    path = edited_sample(xa_dir, tmp_path, "frames.dcm", NumberOfFrames=20)
    message = rejected_message(path)
    assert message == "NumberOfFrames 20 disagrees with the pixel data, which holds 12 frames of 512x512"
    assert_nothing_stored(media_root)


def test_number_of_frames_disagrees_with_compressed_fragments(xa_dir: Path, tmp_path: Path, media_root: Path) -> None:
    ds = pydicom.dcmread(xa_dir / "0002.DCM")
    ds.NumberOfFrames = 200
    path = tmp_path / "frames-jpeg.dcm"
    ds.save_as(path)
    assert "NumberOfFrames 200 disagrees with the pixel data, which holds 96" in rejected_message(path)
    assert_nothing_stored(media_root)


def test_huge_dimensions_are_refused_before_decoding(
    xa_dir: Path, tmp_path: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def must_not_decode(path: Path) -> None:
        raise AssertionError("decoding was attempted")

    monkeypatch.setattr(decoding, "iter_stored_frames", must_not_decode)
    path = edited_sample(xa_dir, tmp_path, "huge.dcm", Rows=65535, Columns=65535)
    assert rejected_message(path) == "image size 65535x65535 is outside 1..4096 pixels; refused before decoding"
    assert_nothing_stored(media_root)


def test_transfer_syntax_without_a_decoder(xa_dir: Path, tmp_path: Path, media_root: Path) -> None:
    """Cath-lab archives hold MPEG-2 cines; no decoder for them is installed."""
    ds = pydicom.dcmread(xa_dir / UNCOMPRESSED)
    ds.file_meta.TransferSyntaxUID = pydicom.uid.MPEG2MPML
    ds.NumberOfFrames = 1
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" + b"\x00" * 60])
    ds["PixelData"].VR = "OB"
    path = tmp_path / "mpeg2.dcm"
    ds.save_as(path, enforce_file_format=True)
    message = rejected_message(path)
    assert (
        message
        == "no decoder is installed for transfer syntax MPEG2 Main Profile / Main Level (1.2.840.10008.1.2.4.100)"
    )
    assert_nothing_stored(media_root)


def test_failure_while_writing_frames_leaves_nothing(
    xa_dir: Path, media_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """All-or-nothing: a file that fails half-way removes the files it had already written."""
    real_encode = ingest.encode_webp
    calls = {"n": 0}

    def failing_encode(display):
        calls["n"] += 1
        if calls["n"] == 6:
            raise OSError("disk full")
        return real_encode(display)

    monkeypatch.setattr(ingest, "encode_webp", failing_encode)
    report = ingest_paths([xa_dir / UNCOMPRESSED])

    assert report.results[0].outcome == Outcome.REJECTED
    assert "disk full" in report.results[0].message
    assert_nothing_stored(media_root)


def test_failure_does_not_remove_frames_another_loop_shares(xa_dir: Path, media_root: Path, monkeypatch) -> None:
    """A failed file removes only what it added: content-addressed frames it shares stay."""
    ingest_paths([xa_dir / UNCOMPRESSED])
    before = sorted(p for p in media_root.rglob("*.webp"))
    catheter = xa_dir / "XA-MONO2-8-12x-catheter.dcm"  # same pixels, other instance

    def fail_rows(*args, **kwargs):
        raise RuntimeError("database went away")

    monkeypatch.setattr(ingest, "_create_rows", fail_rows)
    report = ingest_paths([catheter])

    assert report.results[0].outcome == Outcome.REJECTED
    assert sorted(p for p in media_root.rglob("*.webp")) == before
    assert all(p.exists() for p in before)
    assert CineLoop.objects.count() == 1


# --- archives -------------------------------------------------------------------------------


def test_zip_with_good_and_bad_files(xa_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "batch.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as bundle:
        bundle.write(xa_dir / "0002.DCM", "exam/0002.DCM")
        bundle.writestr("exam/noise.dcm", bytes(range(256)) * 10)
        bundle.write(xa_dir / UNCOMPRESSED, "exam/catheter.dcm")
        bundle.writestr("exam/notes.txt", "not an image")

    report = ingest_paths([archive])

    outcomes = {r.name.split("!")[1]: r.outcome for r in report.results}
    assert outcomes == {
        "exam/0002.DCM": Outcome.INGESTED,
        "exam/noise.dcm": Outcome.REJECTED,
        "exam/catheter.dcm": Outcome.INGESTED,
        "exam/notes.txt": Outcome.SKIPPED,
    }
    assert CineLoop.objects.count() == 2
    assert not report.ok


def test_zip_with_parent_directory_paths(xa_dir: Path, tmp_path: Path) -> None:
    archive = tmp_path / "slip.zip"
    with zipfile.ZipFile(archive, "w") as bundle:
        bundle.write(xa_dir / UNCOMPRESSED, "../../etc/evil.dcm")
        bundle.writestr(zipfile.ZipInfo("/absolute.dcm"), (xa_dir / UNCOMPRESSED).read_bytes())
        bundle.write(xa_dir / "0002.DCM", "fine/0002.DCM")

    report = ingest_paths([archive])

    by_name = {r.name.split("!")[1]: r for r in report.results}
    assert by_name["../../etc/evil.dcm"].outcome == Outcome.REJECTED
    assert "unsafe path" in by_name["../../etc/evil.dcm"].message
    assert by_name["/absolute.dcm"].outcome == Outcome.REJECTED
    assert by_name["fine/0002.DCM"].outcome == Outcome.INGESTED
    assert not (tmp_path.parent / "etc").exists()
    assert CineLoop.objects.count() == 1


def test_zip_bomb_is_refused_without_expanding_it(tmp_path: Path, media_root: Path, settings) -> None:
    archive = tmp_path / "bomb.zip"
    block = b"\x00" * (1024 * 1024)
    with (
        zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as bundle,
        bundle.open("bomb.dcm", "w", force_zip64=True) as member,
    ):
        for _ in range(64):
            member.write(block)
    assert archive.stat().st_size < 1024 * 1024  # ~64 MiB of zeros in well under 1 MiB

    report = ingest_paths([archive])

    assert [r.outcome for r in report.results] == [Outcome.REJECTED]
    assert "zip bomb" in report.results[0].message
    assert_nothing_stored(media_root)


def test_zip_whose_total_expansion_is_too_large(xa_dir: Path, tmp_path: Path, settings) -> None:
    settings.CAGVLM_INGEST = {**settings.CAGVLM_INGEST, "MAX_ZIP_TOTAL_BYTES": 10 * 1024 * 1024}
    archive = tmp_path / "large.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_STORED) as bundle:
        for copy in range(2):
            bundle.write(xa_dir / UNCOMPRESSED, f"copy{copy}.dcm")  # 3 MiB each, 6 MiB

        bundle.writestr("padding.bin", b"\x01" * (5 * 1024 * 1024))

    report = ingest_paths([archive])

    assert len(report.results) == 1
    assert "zip bomb" in report.results[0].message
    assert CineLoop.objects.count() == 0


def test_uploads_go_through_the_same_checks(xa_dir: Path, media_root: Path) -> None:
    from django.core.files.uploadedfile import SimpleUploadedFile

    good = SimpleUploadedFile("0002.DCM", (xa_dir / "0002.DCM").read_bytes())
    bad = SimpleUploadedFile("bad.dcm", b"")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as bundle:
        bundle.write(xa_dir / UNCOMPRESSED, "catheter.dcm")
    archive = SimpleUploadedFile("batch.zip", buffer.getvalue())

    report = ingest.ingest_uploads([good, bad, archive])

    assert [(r.name, r.outcome) for r in report.results] == [
        ("0002.DCM", Outcome.INGESTED),
        ("bad.dcm", Outcome.REJECTED),
        ("batch.zip!catheter.dcm", Outcome.INGESTED),
    ]
