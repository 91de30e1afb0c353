"""Reading X-ray angiography DICOM safely: header checks, pixel-data location, frame decoding.

A cine loop can hold thousands of frames, so nothing here holds a loop's pixels whole: the
header is read without the pixel data, frames are decoded one at a time from the file, and the
pixel data is copied to the de-identified file as a stream (``PixelDataWindow``).

Every check that can refuse a file runs before the first frame is decoded, and each raises
``DicomRejected`` with a message a physician can act on.
"""

from __future__ import annotations

import io
import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pydicom
from django.conf import settings
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.pixels import apply_modality_lut, apply_voi_lut, get_decoder, iter_pixels
from pydicom.uid import UID, DeflatedExplicitVRLittleEndian

PIXEL_DATA_TAG = 0x7FE00010
ITEM_TAG = 0xFFFEE000
SEQUENCE_DELIMITER_TAG = 0xFFFEE0DD

# SOP classes a cine loop may arrive as. Secondary Capture is admitted only with Modality XA
# (the NEMA WG-04 angiography test images are stored that way).
XA_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.12.1",  # X-Ray Angiographic Image Storage
    "1.2.840.10008.5.1.4.1.1.12.1.1",  # Enhanced XA Image Storage
    "1.2.840.10008.5.1.4.1.1.12.3",  # X-Ray Angiographic Bi-Plane Image Storage (retired)
}
SECONDARY_CAPTURE_SOP_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.7",
    "1.2.840.10008.5.1.4.1.1.7.2",  # Multi-frame Grayscale Byte SC
    "1.2.840.10008.5.1.4.1.1.7.3",  # Multi-frame Grayscale Word SC
}
GRAYSCALE = {"MONOCHROME1", "MONOCHROME2"}


class DicomRejected(Exception):
    """A file that cannot be ingested; the message says why, in words for the user."""


@dataclass(frozen=True)
class PixelDataLocation:
    """Where the Pixel Data element's value lies in the source file."""

    value_offset: int
    value_length: int  # for encapsulated data: up to, not including, the sequence delimiter
    encapsulated: bool
    fragment_count: int  # encapsulated only; 0 for native data


def read_header(fp: BinaryIO) -> Dataset:
    """Parse everything before the pixel data, leaving ``fp`` at the Pixel Data element."""
    fp.seek(0, io.SEEK_END)
    if fp.tell() == 0:
        raise DicomRejected("the file is empty")
    fp.seek(0)
    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except InvalidDicomError:
        raise DicomRejected("not a DICOM file (no DICM preamble and no readable DICOM header)") from None
    except Exception as exc:  # pydicom raises many types on corrupt headers
        raise DicomRejected(f"the DICOM header cannot be read: {exc}") from None
    if "TransferSyntaxUID" not in ds.file_meta:
        raise DicomRejected("the DICOM file has no transfer syntax in its file meta information")
    return ds


def check_xa_header(ds: Dataset) -> None:
    """Refuse anything that is not a grayscale X-ray angiography image of a sane size."""
    limits = settings.CAGVLM_INGEST
    modality = str(ds.get("Modality", "")).upper()
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in XA_SOP_CLASSES and not (sop_class in SECONDARY_CAPTURE_SOP_CLASSES and modality == "XA"):
        kind = UID(sop_class).name if sop_class else "an object without SOP class"
        raise DicomRejected(f"not an X-ray angiography image: modality {modality or 'missing'}, {kind}")
    if "SOPInstanceUID" not in ds or "StudyInstanceUID" not in ds:
        raise DicomRejected("the file has no SOP Instance UID or Study Instance UID")
    for keyword in ("Rows", "Columns", "BitsAllocated", "BitsStored", "PhotometricInterpretation"):
        if keyword not in ds:
            raise DicomRejected(f"the image module is incomplete: {keyword} is missing")
    rows, columns = int(ds.Rows), int(ds.Columns)
    if not (0 < rows <= limits["MAX_DIMENSION"] and 0 < columns <= limits["MAX_DIMENSION"]):
        raise DicomRejected(
            f"image size {rows}x{columns} is outside 1..{limits['MAX_DIMENSION']} pixels; refused before decoding"
        )
    frames = number_of_frames(ds)
    if not 0 < frames <= limits["MAX_FRAMES"]:
        raise DicomRejected(f"NumberOfFrames {frames} is outside 1..{limits['MAX_FRAMES']}")
    if ds.PhotometricInterpretation not in GRAYSCALE or int(ds.get("SamplesPerPixel", 1)) != 1:
        raise DicomRejected(f"photometric interpretation {ds.PhotometricInterpretation} is not grayscale angiography")
    if int(ds.BitsAllocated) not in (8, 16) or not 1 <= int(ds.BitsStored) <= int(ds.BitsAllocated):
        raise DicomRejected(f"unsupported bit depth: {ds.BitsAllocated} allocated, {ds.BitsStored} stored")
    transfer_syntax = ds.file_meta.TransferSyntaxUID
    if transfer_syntax == DeflatedExplicitVRLittleEndian:
        raise DicomRejected("Deflated Explicit VR Little Endian is not accepted; send the file uncompressed")
    try:
        decoder = get_decoder(transfer_syntax) if transfer_syntax.is_transfer_syntax else None
    except NotImplementedError:  # e.g. MPEG-2 or H.264 video: pydicom has no decoder at all
        decoder = None
    if decoder is None or not decoder.is_available:
        name = transfer_syntax.name if transfer_syntax.is_transfer_syntax else str(transfer_syntax)
        raise DicomRejected(f"no decoder is installed for transfer syntax {name} ({transfer_syntax})")


def number_of_frames(ds: Dataset) -> int:
    try:
        return int(ds.get("NumberOfFrames") or 1)
    except (TypeError, ValueError):
        raise DicomRejected(f"NumberOfFrames {ds.get('NumberOfFrames')!r} is not a number") from None


def locate_pixel_data(fp: BinaryIO, ds: Dataset) -> PixelDataLocation:
    """Find the Pixel Data value after ``read_header`` and check it against the header.

    Native data must hold exactly the bytes Rows x Columns x frames x bits call for (an odd
    total is padded to even); encapsulated data must hold at least one fragment per frame.
    This is where truncated files and a NumberOfFrames that disagrees with the pixels are caught.
    """
    start = fp.tell()
    little = ds.file_meta.TransferSyntaxUID.is_little_endian
    implicit = ds.file_meta.TransferSyntaxUID.is_implicit_VR
    endian = "<" if little else ">"
    header = fp.read(8)
    if len(header) < 8:
        raise DicomRejected("the file has no pixel data")
    group, element = struct.unpack(endian + "HH", header[:4])
    if (group << 16 | element) != PIXEL_DATA_TAG:
        raise DicomRejected("the file has no pixel data (Pixel Data element not found)")
    if implicit:
        (length,) = struct.unpack(endian + "L", header[4:8])
    else:
        vr = header[4:6]
        if vr in (b"OB", b"OW", b"UN"):
            extra = fp.read(4)
            if len(extra) < 4:
                raise DicomRejected("the pixel data is cut off")
            (length,) = struct.unpack(endian + "L", extra)
        else:
            (length,) = struct.unpack(endian + "H", header[6:8])
    value_offset = fp.tell()
    fp.seek(0, io.SEEK_END)
    file_end = fp.tell()
    frames = number_of_frames(ds)

    if length != 0xFFFFFFFF:
        expected = math.ceil(int(ds.Rows) * int(ds.Columns) * frames * int(ds.BitsAllocated) / 8)
        if value_offset + length > file_end:
            raise DicomRejected(
                f"the pixel data is cut off: the header announces {length} bytes, the file holds "
                f"{file_end - value_offset}"
            )
        if length not in (expected, expected + expected % 2):
            held = length * 8 / (int(ds.Rows) * int(ds.Columns) * int(ds.BitsAllocated))
            raise DicomRejected(
                f"NumberOfFrames {frames} disagrees with the pixel data, which holds {held:g} frames "
                f"of {ds.Rows}x{ds.Columns}"
            )
        fp.seek(start)
        return PixelDataLocation(value_offset, length, encapsulated=False, fragment_count=0)

    # Encapsulated: walk the items (basic offset table first, then one or more fragments
    # per frame) to the sequence delimiter, without reading the fragments themselves.
    fp.seek(value_offset)
    items = 0
    while True:
        item_header = fp.read(8)
        if len(item_header) < 8:
            raise DicomRejected("the compressed pixel data is cut off before its end marker")
        tag_group, tag_element, item_length = struct.unpack("<HHL", item_header)
        tag = tag_group << 16 | tag_element
        if tag == SEQUENCE_DELIMITER_TAG:
            value_length = fp.tell() - 8 - value_offset
            break
        if tag != ITEM_TAG:
            raise DicomRejected(f"the compressed pixel data is corrupt (unexpected tag {tag:08X})")
        if fp.tell() + item_length > file_end:
            raise DicomRejected("the compressed pixel data is cut off inside a fragment")
        fp.seek(item_length, io.SEEK_CUR)
        items += 1
    fragments = items - 1  # the first item is the (possibly empty) basic offset table
    if fragments < frames:
        raise DicomRejected(
            f"NumberOfFrames {frames} disagrees with the pixel data, which holds {fragments} compressed fragments"
        )
    fp.seek(start)
    return PixelDataLocation(value_offset, value_length, encapsulated=True, fragment_count=fragments)


class PixelDataWindow(io.BufferedIOBase):
    """A read-only view of a byte range of an open file, so that pydicom can stream the pixel
    data into the de-identified copy without holding it in memory."""

    def __init__(self, fp: BinaryIO, offset: int, length: int) -> None:
        super().__init__()
        self._fp = fp
        self._offset = offset
        self._length = length
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._length}[whence]
        self._position = min(max(base + offset, 0), self._length)
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        remaining = self._length - self._position
        if size is None or size < 0 or size > remaining:
            size = remaining
        self._fp.seek(self._offset + self._position)
        data = self._fp.read(size)
        self._position += len(data)
        return data


# --- frame timing ---------------------------------------------------------------------------

#: Used only when a file carries no timing at all; recorded as "assumed" on the loop.
ASSUMED_FRAME_TIME_MS = 1000.0 / 15.0


def frame_timing(ds: Dataset, frames: int) -> tuple[float, list[float], str]:
    """Nominal frame time (ms), per-frame offsets from the first frame (ms) and the source.

    Precedence: FrameTimeVector, FrameTime, CineRate, RecommendedDisplayFrameRate.
    FrameTimeVector holds the time since the previous frame (its first value is 0).
    """
    vector = ds.get("FrameTimeVector")
    if vector is not None:
        values = [float(v) for v in (vector if isinstance(vector, list | pydicom.multival.MultiValue) else [vector])]
        if len(values) == frames and all(v >= 0 for v in values):
            offsets = list(np.cumsum([0.0, *values[1:]]))
            nominal = float(np.mean(values[1:])) if frames > 1 else ASSUMED_FRAME_TIME_MS
            return nominal, [float(o) for o in offsets], "FrameTimeVector"
    for keyword, to_ms in (
        ("FrameTime", lambda v: v),
        ("CineRate", lambda v: 1000.0 / v),
        ("RecommendedDisplayFrameRate", lambda v: 1000.0 / v),
    ):
        raw = ds.get(keyword)
        try:
            value = float(raw) if raw not in (None, "") else 0.0
        except (TypeError, ValueError):
            continue
        if value > 0:
            nominal = float(to_ms(value))
            return nominal, [i * nominal for i in range(frames)], keyword
    return ASSUMED_FRAME_TIME_MS, [i * ASSUMED_FRAME_TIME_MS for i in range(frames)], "assumed"


# --- display --------------------------------------------------------------------------------


class DisplayMapping:
    """Maps stored pixel values to the 8-bit image a physician sees.

    Order as PS3.3 prescribes: modality LUT (rescale), then VOI LUT or window, then the
    presentation (MONOCHROME1 is inverted). Files with neither a VOI LUT nor a window get one
    window for the whole loop, from the first frame's 0.5-99.5th percentiles when more than
    eight bits are stored (a per-frame window would erase the contrast dynamics the frame
    sampling reads).
    """

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds
        self._invert = ds.PhotometricInterpretation == "MONOCHROME1"
        self._has_modality_lut = (
            "ModalityLUTSequence" in ds
            or float(ds.get("RescaleSlope", 1) or 1) != 1
            or float(ds.get("RescaleIntercept", 0) or 0) != 0
        )
        self._has_voi_lut = "VOILUTSequence" in ds
        center, width = ds.get("WindowCenter"), ds.get("WindowWidth")
        if center is not None and width is not None and not self._has_voi_lut:
            # Several windows may be offered; the first is the default.
            first = lambda v: float(v[0] if isinstance(v, pydicom.multival.MultiValue | list) else v)  # noqa: E731
            self._window: tuple[float, float] | None = (first(center), max(first(width), 1.0))
        else:
            self._window = None
        self._range: tuple[float, float] | None = None
        self._identity = (
            int(ds.BitsAllocated) == 8
            and int(ds.BitsStored) == 8
            and not self._has_modality_lut
            and not self._has_voi_lut
            and self._window is None
            and not self._invert
            and int(ds.get("PixelRepresentation", 0)) == 0
        )

    def __call__(self, stored: np.ndarray) -> np.ndarray:
        if self._identity:
            return stored if stored.dtype == np.uint8 else stored.astype(np.uint8)
        if self._has_voi_lut:
            values = apply_voi_lut(apply_modality_lut(stored, self._ds), self._ds, prefer_lut=True)
            descriptor = self._ds.VOILUTSequence[0].LUTDescriptor
            out_max = float(2 ** int(descriptor[2]) - 1)
            unit = np.asarray(values, dtype=np.float32) / out_max
        else:
            values = np.asarray(
                apply_modality_lut(stored, self._ds) if self._has_modality_lut else stored, dtype=np.float32
            )
            if self._window is not None:
                center, width = self._window
                # PS3.3 C.11.2.1.2.1, linear function.
                if width > 1:
                    unit = (values - (center - 0.5)) / (width - 1.0) + 0.5
                else:  # a width of one is a threshold
                    unit = (values > center).astype(np.float32)
            else:
                if self._range is None:
                    self._range = self._default_range(values)
                low, high = self._range
                unit = (values - low) / max(high - low, 1.0)
        unit = np.clip(unit, 0.0, 1.0)
        if self._invert:
            unit = 1.0 - unit
        return np.rint(unit * 255.0).astype(np.uint8)

    def _default_range(self, first_frame: np.ndarray) -> tuple[float, float]:
        bits = int(self._ds.BitsStored)
        if bits <= 8 and not self._has_modality_lut:
            return 0.0, float(2**bits - 1)
        low, high = np.percentile(first_frame, [0.5, 99.5])
        return float(low), float(max(high, low + 1.0))


def iter_stored_frames(path: Path) -> Iterator[np.ndarray]:
    """Decode the frames of a file one at a time, as stored (no LUTs applied)."""
    try:
        yield from iter_pixels(path)
    except DicomRejected:
        raise
    except Exception as exc:
        raise DicomRejected(f"the pixel data cannot be decoded: {exc}") from None
