"""Pre-labelling speed of the key-frame CNN, against a naive loop measured in the same run.

Baseline: the per-frame eager loop anyone would write first (``predict_naively``): decode a
frame, run the network on it alone under ``torch.no_grad``, in the default memory format and
torch's default thread setting. Product: ``KeyframePredictor.predict``, the path the
pre-labelling job runs: batches, ``torch.inference_mode``, channels-last, threads set to the
physical cores, decoding of the next batch overlapped with the network. Both get the same
frames (WebP bytes, as ingest stores them) and the same randomly initialised weights; the
predictions must agree (same class for every frame, probabilities within 1e-4).

Frames: the real RCA cine ``../shared/fixtures/xa/0002.DCM`` (96 frames, 8 bit), each encoded as
WebP at the product's default quality, repeated to the number asked; synthetic cine-like frames
when the fixture is absent. Target: product at least 3x the naive loop with a small
architecture on this CPU. ConvNeXt-Base is measured too, on fewer frames (it is slow here).

Usage: ``.venv/bin/python benchmarks/prelabel.py [--frames 96] [--base-frames 16] [--image-size 224]
[--loop-reference]`` (the last: models that read each frame beside its loop's minimum projection;
both paths decode the projection once).
The last line reads ``ratio=<product / naive> same_predictions=<true|false> frames_per_s=<product>
decode_ceiling=<the most any path could gain over the naive loop: its time over decoding alone on
every core> compute_ceiling=<the same, with the network's operations also counted at the CPU's
float32 matrix-product peak measured in the run>`` followed by the ConvNeXt-Base figures.

A ceiling under 3 means that no float32 path, however batched, can reach the 3x target on this
machine: the naive loop's network already runs close to the CPU's matrix-product peak, so
identical predictions leave little to gain. (Reduced precision, bf16 or int8, would go
faster, but its probabilities differ from the float32 model's by more than 1e-4.)
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from annotation.derivatives import minimum_projection  # noqa: E402
from inference.ml.keyframe.config import KeyframeModelConfig  # noqa: E402
from inference.ml.keyframe.data import decode_many  # noqa: E402
from inference.ml.keyframe.model import build_model  # noqa: E402
from inference.ml.keyframe.predictor import KeyframePredictor, predict_naively  # noqa: E402

FIXTURE = Path(os.environ.get("CAGVLM_XA_FIXTURES", REPO.parent / "shared" / "fixtures" / "xa")) / "0002.DCM"
WEBP_QUALITY = 90  # the product's default (CAGVLM_WEBP_QUALITY)
PEAK_MATRIX_SIZE = 2048  # the square float32 matrix product that measures the CPU's peak


def webp(display: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(display).save(buffer, format="WEBP", quality=WEBP_QUALITY)
    return buffer.getvalue()


def fixture_frames() -> list[np.ndarray]:
    from pydicom.pixels import iter_pixels

    # 8 bits stored, MONOCHROME2, no window: the stored pixels are the display image.
    return [np.ascontiguousarray(frame, dtype=np.uint8) for frame in iter_pixels(FIXTURE)]


def synthetic_frames(count: int = 48, size: int = 512) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    frames = []
    for index in range(count):
        image = 150 + 30 * np.sin(x / 80.0) * np.cos(y / 110.0)
        centre = size / 2 + 90 * np.sin(y / 70.0 + index / 6.0)
        image -= 70 * np.exp(-((x - centre) ** 2) / 50.0) * min(1.0, index / 12)
        frames.append(np.clip(image + rng.normal(0, 6, image.shape), 0, 255).astype(np.uint8))
    return frames


def frames_as_webp(count: int) -> tuple[list[bytes], str]:
    try:
        source, name = fixture_frames(), FIXTURE.name
    except (OSError, ImportError, ValueError) as exc:
        print(f"fixture unavailable ({exc}); synthetic frames", file=sys.stderr)
        source, name = synthetic_frames(), "synthetic"
    encoded = [webp(frame) for frame in source]
    return [encoded[index % len(encoded)] for index in range(count)], name


def network_gflop(model: torch.nn.Module, config: KeyframeModelConfig) -> float:
    """The floating-point operations of one frame through the network (multiply and add count
    as two), as torch's FLOP counter tallies its convolutions and matrix products."""
    sample = torch.zeros(1, config.image_channels, config.image_size, config.image_size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(sample)
    return counter.get_total_flops() / 1e9


def matmul_peak_gflops(size: int = PEAK_MATRIX_SIZE, repeats: int = 10) -> float:
    """What this CPU reaches on the friendliest float32 work there is, a large square matrix
    product on every core: no network layer runs faster than this."""
    threads = torch.get_num_threads()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    try:
        generator = torch.Generator().manual_seed(0)
        left, right = torch.randn(size, size, generator=generator), torch.randn(size, size, generator=generator)
        for _ in range(3):
            left @ right
        started = time.perf_counter()
        for _ in range(repeats):
            left @ right
        seconds = time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)
    return 2 * size**3 * repeats / seconds / 1e9


def measure(
    arch: str, image_size: int, frames: list[bytes], batch_size: int, threads: int | None, loop_reference: bool
) -> dict:
    config = KeyframeModelConfig(
        arch=arch, image_size=image_size, loop_reference=loop_reference, in_chans=2 if loop_reference else 1
    )
    torch.manual_seed(0)
    model = build_model(config).eval()
    product = KeyframePredictor.from_model(model, config, device="cpu", threads=threads)
    # The frames as one loop, with its minimum projection (what pre-labelling reads from the loop).
    references = [minimum_projection(dict.fromkeys(frames))] * len(frames) if loop_reference else None

    # Warm-up, the same for both: a few frames each (first calls pick oneDNN kernels).
    predict_naively(model, frames[:2], config, references and references[:2])
    product.predict(frames[:2], batch_size=batch_size, references=references and references[:2])

    started = time.perf_counter()
    naive = predict_naively(model, frames, config, references)
    naive_seconds = time.perf_counter() - started
    started = time.perf_counter()
    batched = product.predict(frames, batch_size=batch_size, references=references)
    product_seconds = time.perf_counter() - started

    # What decoding alone costs (one thread): both paths decode every frame the same way, so
    # it bounds the ratio even if the network were free and decoding used every core.
    started = time.perf_counter()
    decode_many(frames, image_size)
    decode_seconds = time.perf_counter() - started

    difference = float(np.abs(batched - naive).max())
    same = bool(np.array_equal(batched.argmax(axis=1), naive.argmax(axis=1)) and difference <= 1e-4)
    result = {
        "arch": arch,
        "frames": len(frames),
        "naive_fps": len(frames) / naive_seconds,
        "product_fps": len(frames) / product_seconds,
        "same": same,
        "max_difference": difference,
        "threads": torch.get_num_threads(),
    }
    result["ratio"] = result["product_fps"] / result["naive_fps"]
    result["decode_ms"] = 1000 * decode_seconds / len(frames)
    cores = len(os.sched_getaffinity(0))
    result["decode_ceiling"] = naive_seconds / (decode_seconds / cores)
    # The network's own bound: its operations at the matrix-product peak. Together with decoding
    # on every core, the least time per frame any float32 path could take, so the most it could
    # gain over the naive loop while predicting the same.
    result["gflop"] = network_gflop(model, config)
    result["peak_gflops"] = matmul_peak_gflops()
    result["naive_gflops"] = result["gflop"] * result["naive_fps"]
    least_seconds = decode_seconds / cores + len(frames) * result["gflop"] / result["peak_gflops"]
    result["compute_ceiling"] = naive_seconds / least_seconds
    print(
        f"{arch} at {image_size} px, {len(frames)} frames, batch {batch_size}, {result['threads']} threads: "
        f"naive {result['naive_fps']:.1f} frames/s, product {result['product_fps']:.1f} frames/s, "
        f"ratio {result['ratio']:.2f}, same predictions {str(same).lower()} (max |dp| {difference:.1e}); "
        f"decoding alone {result['decode_ms']:.1f} ms/frame on one thread, so no path can beat the naive loop "
        f"by more than {result['decode_ceiling']:.1f}x on {cores} cores",
        flush=True,
    )
    print(
        f"  the network: {result['gflop']:.2f} GFLOP a frame; the naive loop runs it at "
        f"{result['naive_gflops']:.0f} GFLOP/s (decoding included) where a "
        f"{PEAK_MATRIX_SIZE}x{PEAK_MATRIX_SIZE} matrix product reaches {result['peak_gflops']:.0f} GFLOP/s "
        f"on {cores} cores, so no float32 path can beat the naive loop by more than "
        f"{result['compute_ceiling']:.2f}x here",
        flush=True,
    )
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", default="convnext_atto", help="small architecture (default %(default)s)")
    parser.add_argument("--frames", type=int, default=96, help="frames for the small architecture")
    parser.add_argument("--base-arch", default="convnext_base", help="the study's architecture")
    parser.add_argument("--base-frames", type=int, default=16, help="frames for ConvNeXt-Base; 0 skips it")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=64, help="the pre-labelling job's batch size")
    parser.add_argument("--threads", type=int, default=None, help="product threads (default: physical cores)")
    parser.add_argument(
        "--loop-reference", action="store_true", help="models that read each frame beside its loop's minimum projection"
    )
    args = parser.parse_args()

    frames, source = frames_as_webp(max(args.frames, args.base_frames))
    print(f"frames: {source}, WebP quality {WEBP_QUALITY}; torch {torch.__version__}, {os.cpu_count()} CPUs")
    small = measure(
        args.arch, args.image_size, frames[: args.frames], args.batch_size, args.threads, args.loop_reference
    )
    results = [small]
    if args.base_frames:
        results.append(
            measure(
                args.base_arch,
                args.image_size,
                frames[: args.base_frames],
                args.batch_size,
                args.threads,
                args.loop_reference,
            )
        )
    same = all(result["same"] for result in results)
    line = (
        f"ratio={small['ratio']:.2f} same_predictions={str(same).lower()} frames_per_s={small['product_fps']:.1f}"
        f" decode_ceiling={small['decode_ceiling']:.2f} compute_ceiling={small['compute_ceiling']:.2f}"
    )
    if args.base_frames:
        base = results[1]
        line += (
            f" base_frames_per_s={base['product_fps']:.2f} base_ratio={base['ratio']:.2f}"
            f" base_compute_ceiling={base['compute_ceiling']:.2f}"
        )
    print(line)


if __name__ == "__main__":
    main()
