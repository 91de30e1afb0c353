"""Ingest speed and memory, against a baseline measured in the same run.

Baseline: what any ingest must do at the least, decoding each frame with pydicom and encoding
its WebP with Pillow at the product's quality. Full ingest adds header checks,
de-identification, the de-identified copy, display mapping, statistics, content hashing,
storage writes, frame sampling and the database rows. Target: full ingest at most 1.5x the
baseline per frame.

Memory: a 2,000-frame 512x512 loop (500 MiB of pixels) is ingested in a fresh process whose
peak resident memory above its starting point must stay under 400 MB: frames are decoded one
at a time and the pixel data is streamed into the de-identified copy.

Usage: ``.venv/bin/python benchmarks/ingest.py [--frames-big 2000] [--repeat 3]``.
The last line reads ``ratio=<full ingest / baseline> peak_mb=<peak above start>``.
"""

from __future__ import annotations

import argparse
import io
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SCRATCH = Path(tempfile.mkdtemp(prefix="cagvlm-bench-ingest-"))
os.environ["CAGVLM_VAR_DIR"] = str(SCRATCH / "var")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cagvlm_site.settings")

import django  # noqa: E402

django.setup()

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from PIL import Image  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.pixels import iter_pixels  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, RLELossless, generate_uid  # noqa: E402

from annotation.ingest import ingest_paths  # noqa: E402 - imported before any timing starts
from annotation.models import CineLoop  # noqa: E402

FIXTURES = Path(os.environ.get("CAGVLM_XA_FIXTURES", REPO.parent / "shared" / "fixtures" / "xa"))


def synthetic_frame(index: int, rows: int, columns: int, rng: np.random.Generator) -> np.ndarray:
    """A cine-like frame: smooth background, a dark moving vessel, quantum noise."""
    y, x = np.mgrid[0:rows, 0:columns].astype(np.float32)
    background = 150 + 40 * np.sin(x / 90.0) * np.cos(y / 120.0)
    phase = index / 6.0
    centre = columns / 2 + 80 * np.sin(y / 70.0 + phase)
    vessel = 70 * np.exp(-(((x - centre) / 6.0) ** 2))
    noisy = background - vessel + rng.normal(0, 4, size=(rows, columns))
    return np.clip(noisy, 0, 255)


def write_synthetic_loop(path: Path, frames: int, *, bits: int = 8, rle: bool = False, rows: int = 512) -> Path:
    """Write a multi-frame XA file without holding all its frames in memory."""
    rng = np.random.default_rng(frames)
    raw = path.with_suffix(".raw")
    dtype = np.uint8 if bits == 8 else np.uint16
    scale = 1 if bits == 8 else 16  # 12 bits stored
    with raw.open("wb") as out:
        for index in range(frames):
            out.write((synthetic_frame(index, rows, rows, rng) * scale).astype(dtype).tobytes())
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = pydicom.uid.XRayAngiographicImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.Modality = "XA"
    ds.PatientName = "Bench^Patient"
    ds.PatientID = f"BENCH-{frames}-{bits}"
    ds.StudyDate = "20260101"
    ds.Rows = ds.Columns = rows
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = bits
    ds.BitsStored = 8 if bits == 8 else 12
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    ds.NumberOfFrames = frames
    ds.FrameTime = 66.6
    ds.PositionerPrimaryAngle = -30
    ds.PositionerSecondaryAngle = 20
    if bits == 16:
        ds.WindowCenter, ds.WindowWidth = 2048, 4096
    with raw.open("rb") as pixels:
        ds.PixelData = pixels  # streamed by pydicom while writing
        ds["PixelData"].VR = "OB" if bits == 8 else "OW"
        if rle:
            ds.PixelData = pixels.read()
            ds.compress(RLELossless)
        ds.save_as(path, enforce_file_format=True)
    raw.unlink()
    return path


def baseline_seconds(paths: list[Path]) -> tuple[float, int]:
    """Decode every frame with pydicom and encode it as WebP with Pillow; nothing else."""
    quality = settings.CAGVLM_INGEST["WEBP_QUALITY"]
    frames = 0
    start = time.perf_counter()
    for path in paths:
        for frame in iter_pixels(path):
            image = frame if frame.dtype == np.uint8 else (frame >> 4).astype(np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(image).save(buffer, format="WEBP", quality=quality)
            frames += 1
    return time.perf_counter() - start, frames


def full_ingest_seconds(paths: list[Path]) -> tuple[float, int]:
    CineLoop.objects.all().delete()  # a fresh run each repeat: no duplicates
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    start = time.perf_counter()
    report = ingest_paths(paths)
    elapsed = time.perf_counter() - start
    assert report.ok, [r.line for r in report.results]
    return elapsed, report.frames_ingested


def peak_memory_child(path: str) -> None:
    """Run in a fresh process: ingest one file, print the peak RSS above the start (MB)."""
    call_command("migrate", verbosity=0)
    start_kb = _rss_kb()
    report = ingest_paths([Path(path)])
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert report.ok, [r.line for r in report.results]
    print(f"{(peak_kb - start_kb) / 1024:.1f} {report.frames_ingested}")


def _rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise RuntimeError("VmRSS not found")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames-big", type=int, default=2000, help="frames of the memory-test loop")
    parser.add_argument("--repeat", type=int, default=3, help="timing repeats; the best of each is kept")
    args = parser.parse_args()

    call_command("migrate", verbosity=0)
    data = SCRATCH / "data"
    data.mkdir()
    inputs = []
    if FIXTURES.is_dir():
        inputs += sorted(p for p in FIXTURES.rglob("*") if p.is_file() and p.suffix.lower() != ".md")
    else:
        print(f"note: no real samples at {FIXTURES}; synthetic loops only")
    inputs.append(write_synthetic_loop(data / "synthetic-8bit-300.dcm", 300))
    inputs.append(write_synthetic_loop(data / "synthetic-12bit-100.dcm", 100, bits=16))
    inputs.append(write_synthetic_loop(data / "synthetic-rle-60.dcm", 60, rle=True))

    baseline, full = [], []
    frames = 0
    for _ in range(args.repeat):  # interleaved, so that machine noise hits both alike
        seconds, frames = baseline_seconds(inputs)
        baseline.append(seconds)
        seconds, ingested = full_ingest_seconds(inputs)
        full.append(seconds)
        assert ingested == frames, (ingested, frames)
    base_ms = min(baseline) / frames * 1000
    full_ms = min(full) / frames * 1000
    ratio = full_ms / base_ms
    print(f"files={len(inputs)} frames={frames} repeats={args.repeat}")
    print(f"baseline (decode + WebP):  {base_ms:7.2f} ms/frame")
    print(f"full ingest:               {full_ms:7.2f} ms/frame   ({ratio:.2f}x baseline, target <= 1.5x)")

    big = write_synthetic_loop(data / "synthetic-big.dcm", args.frames_big)
    print(f"memory test loop: {args.frames_big} frames, {big.stat().st_size / 1024**2:.0f} MiB on disk")
    child = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, __file__, "--peak-memory-child", str(big)],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "CAGVLM_VAR_DIR": str(SCRATCH / "var-memory")},
    )
    peak_mb, big_frames = child.stdout.split()[-2:]
    print(f"peak memory above start while ingesting it: {float(peak_mb):.0f} MB (target < 400 MB)")
    assert int(big_frames) == args.frames_big
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(f"ratio={ratio:.2f} peak_mb={float(peak_mb):.0f}")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--peak-memory-child":
        peak_memory_child(sys.argv[2])
    else:
        main()
