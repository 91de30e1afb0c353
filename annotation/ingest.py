"""Ingest of X-ray angiography DICOM: files, folders and zip archives, one domain function.

The command line (``manage.py ingest``), the upload page and the REST endpoint all call
``ingest_paths`` or ``ingest_uploads``. Each file is all-or-nothing: it is de-identified before
anything is stored, then its de-identified DICOM and per-frame WebP derivatives are written and
its rows created in one transaction; if anything fails, the rows roll back and the files it
added are removed. A bad file is reported and the batch goes on.
"""

from __future__ import annotations

import logging
import os
import shutil
import stat
import tempfile
import zipfile
from collections import deque
from collections.abc import Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import numpy as np
import pydicom
from django.conf import settings
from django.db import IntegrityError, transaction

from annotation import decoding, deid
from annotation.decoding import DicomRejected
from annotation.derivatives import all_or_nothing, encode_webp
from annotation.models import CineLoop, Exam, FrameTimingSource, Patient
from annotation.models import Frame as FrameRow
from annotation.sampling import sample_frames_at_intensity_extrema

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile

logger = logging.getLogger(__name__)

# Real-world headers break VR rules often (e.g. UIDs with leading zeros); reading them must
# not fail or flood the log. Writing still validates.
pydicom.config.settings.reading_validation_mode = pydicom.config.IGNORE

# In folders and archives, files that are plainly not images are listed as skipped rather
# than rejected, so that a README beside the cines does not fail the batch.
SKIPPED_SUFFIXES = {".md", ".txt", ".pdf", ".json", ".csv", ".xml", ".html", ".htm", ".ini", ".log"}
SKIPPED_NAMES = {"DICOMDIR"}
FRAME_BATCH = 500
ENCODER_THREADS = max(1, min(4, os.cpu_count() or 1))
FRAMES_IN_FLIGHT = 4 * ENCODER_THREADS


class Outcome:
    INGESTED = "ingested"
    DUPLICATE = "duplicate"
    REJECTED = "rejected"
    SKIPPED = "skipped"


@dataclass
class IngestResult:
    name: str
    outcome: str
    message: str
    loop: CineLoop | None = None
    frame_count: int = 0

    @property
    def line(self) -> str:
        return f"{self.outcome:<9} {self.name}: {self.message}"


@dataclass
class IngestReport:
    results: list[IngestResult] = field(default_factory=list)

    def count(self, outcome: str) -> int:
        return sum(1 for result in self.results if result.outcome == outcome)

    @property
    def ok(self) -> bool:
        return self.count(Outcome.REJECTED) == 0

    @property
    def frames_ingested(self) -> int:
        return sum(r.frame_count for r in self.results if r.outcome == Outcome.INGESTED)

    @property
    def summary(self) -> str:
        return (
            f"{self.count(Outcome.INGESTED)} ingested ({self.frames_ingested} frames), "
            f"{self.count(Outcome.DUPLICATE)} duplicate, {self.count(Outcome.REJECTED)} rejected, "
            f"{self.count(Outcome.SKIPPED)} skipped"
        )


# --- entry points ---------------------------------------------------------------------------


def ingest_paths(paths: Iterable[Path | str]) -> IngestReport:
    """Ingest files, folders (recursively) and zip archives."""
    report = IngestReport()
    with tempfile.TemporaryDirectory(prefix="cagvlm-ingest-") as scratch:
        for raw in paths:
            path = Path(raw)
            if path.is_dir():
                for member in sorted(p for p in path.rglob("*") if p.is_file()):
                    if _skip_in_collection(member.name):
                        report.results.append(IngestResult(str(member), Outcome.SKIPPED, "not an image file"))
                    else:
                        report.results.extend(_ingest_file_or_zip(member, str(member), Path(scratch)))
            elif path.is_file():
                report.results.extend(_ingest_file_or_zip(path, str(path), Path(scratch)))
            else:
                report.results.append(IngestResult(str(path), Outcome.REJECTED, "no such file or folder"))
    return report


def ingest_uploads(files: Iterable[UploadedFile]) -> IngestReport:
    """Ingest files uploaded through the page or the API (zip archives are opened)."""
    report = IngestReport()
    with tempfile.TemporaryDirectory(prefix="cagvlm-upload-") as scratch_name:
        scratch = Path(scratch_name)
        for number, upload in enumerate(files):
            name = Path(upload.name or f"upload-{number}").name
            local = scratch / f"{number:05d}-upload"
            with local.open("wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
            report.results.extend(_ingest_file_or_zip(local, name, scratch))
            local.unlink(missing_ok=True)
    return report


# --- archives -------------------------------------------------------------------------------


def _ingest_file_or_zip(path: Path, label: str, scratch: Path) -> list[IngestResult]:
    # A DICOM file cannot pass for a zip: zip archives end with a central directory that
    # is_zipfile looks for, and DICOM files carry "DICM" at byte 128.
    if zipfile.is_zipfile(path):
        return _ingest_zip(path, label, scratch)
    return [ingest_file(path, label)]


def _skip_in_collection(name: str) -> bool:
    return name.startswith(".") or name in SKIPPED_NAMES or Path(name).suffix.lower() in SKIPPED_SUFFIXES


def _unsafe_member_name(name: str) -> bool:
    pure = PurePosixPath(name.replace("\\", "/"))
    return pure.is_absolute() or ".." in pure.parts or (len(name) > 1 and name[1] == ":")


def _ingest_zip(archive: Path, label: str, scratch: Path) -> list[IngestResult]:
    limits = settings.CAGVLM_INGEST
    results: list[IngestResult] = []
    try:
        bundle = zipfile.ZipFile(archive)
    except (zipfile.BadZipFile, OSError) as exc:
        return [IngestResult(label, Outcome.REJECTED, f"the zip archive cannot be opened: {exc}")]
    with bundle:
        members = [info for info in bundle.infolist() if not info.is_dir()]
        declared_total = sum(info.file_size for info in members)
        if declared_total > limits["MAX_ZIP_TOTAL_BYTES"]:
            return [
                IngestResult(
                    label,
                    Outcome.REJECTED,
                    f"the archive expands to {declared_total} bytes, over the limit of "
                    f"{limits['MAX_ZIP_TOTAL_BYTES']}; refused as a possible zip bomb",
                )
            ]
        for info in members:
            member_label = f"{label}!{info.filename}"
            if _unsafe_member_name(info.filename):
                results.append(
                    IngestResult(
                        member_label, Outcome.REJECTED, "unsafe path in archive (absolute or '..'); not extracted"
                    )
                )
                continue
            if stat.S_ISLNK(info.external_attr >> 16):
                results.append(IngestResult(member_label, Outcome.REJECTED, "symbolic link in archive; not extracted"))
                continue
            if _skip_in_collection(PurePosixPath(info.filename).name):
                results.append(IngestResult(member_label, Outcome.SKIPPED, "not an image file"))
                continue
            ratio = info.file_size / max(info.compress_size, 1)
            if info.file_size > limits["MAX_ZIP_MEMBER_BYTES"] or ratio > limits["MAX_ZIP_RATIO"]:
                results.append(
                    IngestResult(
                        member_label,
                        Outcome.REJECTED,
                        f"expands {ratio:.0f}-fold to {info.file_size} bytes; refused as a possible zip bomb",
                    )
                )
                continue
            local = scratch / "zip-member"
            try:
                with bundle.open(info) as source, local.open("wb") as out:
                    # zipfile stops at the declared size and checks the CRC, so a lying
                    # header cannot make this copy grow past the limits checked above.
                    shutil.copyfileobj(source, out, length=1024 * 1024)
            except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
                results.append(IngestResult(member_label, Outcome.REJECTED, f"cannot be extracted: {exc}"))
                continue
            results.append(ingest_file(local, member_label))
            local.unlink(missing_ok=True)
    return results


# --- one file -------------------------------------------------------------------------------


def ingest_file(path: Path, label: str) -> IngestResult:
    """Ingest one DICOM file; never raises for bad input, never leaves a partial record."""
    try:
        return _ingest_dicom(path, label)
    except DicomRejected as exc:
        return IngestResult(label, Outcome.REJECTED, str(exc))
    except Exception as exc:  # a bug must not sink the batch; it is logged in full
        logger.exception("ingest of %s failed unexpectedly", label)
        return IngestResult(label, Outcome.REJECTED, f"internal error while ingesting ({type(exc).__name__}: {exc})")


def _ingest_dicom(path: Path, label: str) -> IngestResult:
    with path.open("rb") as fp:
        ds = decoding.read_header(fp)
        decoding.check_xa_header(ds)
        location = decoding.locate_pixel_data(fp, ds)
        sop_uid = deid.remap_uid(str(ds.SOPInstanceUID))
        if existing := CineLoop.objects.filter(sop_instance_uid=sop_uid).select_related("exam").first():
            return IngestResult(label, Outcome.DUPLICATE, f"already ingested as loop {existing.uuid}", loop=existing)
        source_transfer_syntax = str(ds.file_meta.TransferSyntaxUID)
        header = deid.deidentify(ds)
        frames = decoding.number_of_frames(ds)
        frame_time_ms, offsets, timing_source = decoding.frame_timing(ds, frames)

        with all_or_nothing() as stored:
            # 1. The de-identified DICOM: new header, pixel data streamed from the source.
            window = decoding.PixelDataWindow(fp, location.value_offset, location.value_length)
            vr = "OB" if location.encapsulated or int(ds.BitsAllocated) == 8 else "OW"
            ds.add_new(decoding.PIXEL_DATA_TAG, vr, window)
            if location.encapsulated:
                ds["PixelData"].is_undefined_length = True
            with tempfile.TemporaryFile() as deidentified:
                ds.save_as(deidentified, enforce_file_format=True)
                dicom_name, dicom_sha256 = stored.save_file("dicom", "dcm", deidentified)

            # 2. Frames, decoded one at a time: statistics and a WebP derivative each. WebP
            # encoding (which releases the GIL) runs on a few threads while the next frames
            # decode; at most FRAMES_IN_FLIGHT frames are held at once.
            to_display = decoding.DisplayMapping(ds)
            means: list[float] = []
            variances: list[float] = []
            pending: deque[Future[str]] = deque()
            images: list[str] = []

            def derive(display: np.ndarray) -> str:
                return stored.save_bytes("frames", "webp", encode_webp(display))

            with ThreadPoolExecutor(max_workers=ENCODER_THREADS, thread_name_prefix="webp") as encoders:
                try:
                    for stored_frame in decoding.iter_stored_frames(path):
                        display = to_display(stored_frame)
                        means.append(float(display.mean()))
                        variances.append(float(display.var()))
                        pending.append(encoders.submit(derive, display))
                        if len(pending) >= FRAMES_IN_FLIGHT:
                            images.append(pending.popleft().result())
                    while pending:
                        images.append(pending.popleft().result())
                finally:
                    for future in pending:
                        future.cancel()
            if len(images) != frames:
                raise DicomRejected(f"NumberOfFrames {frames} disagrees with the {len(images)} frames decoded")
            sampled = set(
                sample_frames_at_intensity_extrema(means, variances, min_gap=settings.CAGVLM_SAMPLING["MIN_GAP_FRAMES"])
            )

            # 3. Rows, in one transaction.
            try:
                with transaction.atomic():
                    loop = _create_rows(
                        ds, header, dicom_name, dicom_sha256, source_transfer_syntax, frame_time_ms, timing_source
                    )
                    FrameRow.objects.bulk_create(
                        [
                            FrameRow(
                                loop=loop,
                                index=index,
                                time_offset_ms=offsets[index],
                                intensity_mean=means[index],
                                intensity_variance=variances[index],
                                is_sampled=index in sampled,
                                image=images[index],
                            )
                            for index in range(frames)
                        ],
                        batch_size=FRAME_BATCH,
                    )
            except IntegrityError:
                # Another ingest of the same instance won the race.
                if existing := CineLoop.objects.filter(sop_instance_uid=sop_uid).first():
                    stored.remove_created()
                    return IngestResult(
                        label, Outcome.DUPLICATE, f"already ingested as loop {existing.uuid}", loop=existing
                    )
                raise

    message = (
        f"{frames} frame{'s' if frames != 1 else ''}, {loop.projection_label}, {len(sampled)} sampled for annotation"
    )
    if loop.needs_burned_in_review:
        message += "; flagged: burned-in annotation, check the pixels for identity"
    return IngestResult(label, Outcome.INGESTED, message, loop=loop, frame_count=frames)


def _float(ds: pydicom.Dataset, keyword: str, index: int | None = None) -> float | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return None
    try:
        return float(value[index] if index is not None else value)
    except (TypeError, ValueError, IndexError):
        return None


def _int(ds: pydicom.Dataset, keyword: str) -> int | None:
    value = ds.get(keyword)
    try:
        return int(value) if value not in (None, "") else None
    except (TypeError, ValueError):
        return None


def _acquisition_datetime(ds: pydicom.Dataset) -> datetime | None:
    raw = str(ds.get("AcquisitionDateTime", "") or "")
    if not raw:
        date_part, time_part = str(ds.get("AcquisitionDate", "") or ""), str(ds.get("AcquisitionTime", "") or "")
        raw = date_part + time_part if date_part else ""
    try:
        value = pydicom.valuerep.DT(raw[:21]) if len(raw) >= 8 else None
    except ValueError:
        return None
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _create_rows(
    ds: pydicom.Dataset,
    header: deid.DeidentifiedHeader,
    dicom_name: str,
    dicom_sha256: str,
    source_transfer_syntax: str,
    frame_time_ms: float,
    timing_source: str,
) -> CineLoop:
    patient, created = Patient.objects.get_or_create(
        pseudonym=header.patient.pseudonym,
        defaults={"identifier_digests": list(header.patient.identifier_digests)},
    )
    if not created:
        merged = sorted(set(patient.identifier_digests) | set(header.patient.identifier_digests))
        if merged != patient.identifier_digests:
            patient.identifier_digests = merged
            patient.save(update_fields=["identifier_digests", "updated_at"])
    exam, _ = Exam.objects.get_or_create(
        study_instance_uid=str(ds.StudyInstanceUID),
        defaults={
            "patient": patient,
            "study_date": header.study_date,
            "patient_sex": header.patient_sex,
            "patient_age_years": header.patient_age_years,
        },
    )
    spacing = "ImagerPixelSpacing" if ds.get("ImagerPixelSpacing") else "PixelSpacing"
    burned_in = header.burned_in_annotation
    return CineLoop.objects.create(
        exam=exam,
        sop_instance_uid=str(ds.SOPInstanceUID),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        sop_class_uid=str(ds.SOPClassUID),
        series_number=_int(ds, "SeriesNumber"),
        instance_number=_int(ds, "InstanceNumber"),
        acquisition_datetime=_acquisition_datetime(ds),
        frame_count=decoding.number_of_frames(ds),
        rows=int(ds.Rows),
        columns=int(ds.Columns),
        bits_allocated=int(ds.BitsAllocated),
        bits_stored=int(ds.BitsStored),
        photometric_interpretation=str(ds.PhotometricInterpretation),
        transfer_syntax_uid=source_transfer_syntax,
        frame_time_ms=frame_time_ms,
        frame_timing_source=FrameTimingSource(timing_source),
        positioner_primary_angle=_float(ds, "PositionerPrimaryAngle"),
        positioner_secondary_angle=_float(ds, "PositionerSecondaryAngle"),
        pixel_spacing_row_mm=_float(ds, spacing, 0),
        pixel_spacing_col_mm=_float(ds, spacing, 1),
        distance_source_to_detector_mm=_float(ds, "DistanceSourceToDetector"),
        distance_source_to_patient_mm=_float(ds, "DistanceSourceToPatient"),
        burned_in_annotation=burned_in,
        needs_burned_in_review=burned_in == "YES",
        dicom_file=dicom_name,
        dicom_sha256=dicom_sha256,
    )
