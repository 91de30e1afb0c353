"""Train the key-frame CNN on phantom exams on the CPU and measure it on held-out exams.

The experiment behind the CPU defaults (``inference.ml.keyframe.config.CPU_TRAINING``): it
feeds the trainer exactly what the product feeds it, without a database: every frame of every
run is mapped to its 8-bit display image the way ingest does (``annotation.decoding.DisplayMapping``),
encoded as WebP at the product's default quality, and labelled from the phantom's ground truth.
Exams are split whole (train / validation / test, seeded), so the test frames come from
exams the network never saw.

Usage::

    .venv/bin/python manage.py phantom --exams 12 --seed 7 --out /tmp/ml-phantom
    .venv/bin/python benchmarks/phantom_keyframe_experiment.py /tmp/ml-phantom [--arch convnext_atto]
        [--image-size 128] [--epochs 6] [--batch-size 32] [--lr 1e-3]

The decoded frames are cached next to the cohort (``frames.webp.pkl``) for further runs. The
last line reads ``laterality_f1=.. keyframe_f1=.. macro_f1=.. seconds=..`` (test split).
"""

from __future__ import annotations

import argparse
import io
import json
import pickle
import random
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import pydicom  # noqa: E402
from PIL import Image  # noqa: E402

from annotation.decoding import DisplayMapping, iter_stored_frames  # noqa: E402
from inference.ml.keyframe.config import CLASS_NAMES, CPU_TRAINING  # noqa: E402
from inference.ml.keyframe.data import ImageItem  # noqa: E402
from inference.ml.keyframe.trainer import train_keyframe_model  # noqa: E402
from inference.parameters import TrainKeyframeParameters  # noqa: E402

WEBP_QUALITY = 90  # the product's default (CAGVLM_WEBP_QUALITY)
CACHE_NAME = "frames.webp.pkl"

Frame = tuple[str, int, bytes]  # key, class index, WebP bytes


def webp(display) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(display).save(buffer, format="WEBP", quality=WEBP_QUALITY)
    return buffer.getvalue()


def load_exam(folder: Path) -> list[Frame]:
    truth = json.loads((folder / "ground_truth.json").read_text(encoding="utf-8"))
    frames: list[Frame] = []
    for loop in truth["loops"]:
        path = folder / loop["file"]
        labels = {frame["index"]: f"{frame['laterality']}_{frame['category']}" for frame in loop["frames"]}
        to_display = DisplayMapping(pydicom.dcmread(path, stop_before_pixels=True))
        for index, stored in enumerate(iter_stored_frames(path)):
            frames.append(
                (f"{folder.name}/{loop['file']}#{index}", CLASS_NAMES.index(labels[index]), webp(to_display(stored)))
            )
    return frames


def load_cohort(phantom: Path, workers: int) -> dict[str, list[Frame]]:
    cache = phantom / CACHE_NAME
    if cache.exists():
        with cache.open("rb") as stream:
            return pickle.load(stream)  # noqa: S301 - a cache this script wrote
    started = time.monotonic()
    folders = sorted(path.parent for path in phantom.glob("*/ground_truth.json"))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        exams = dict(zip((folder.name for folder in folders), pool.map(load_exam, folders), strict=True))
    with cache.open("wb") as stream:
        pickle.dump(exams, stream)
    print(f"decoded {sum(map(len, exams.values()))} frames of {len(exams)} exams in {time.monotonic() - started:.0f} s")
    return exams


def split_exams(exams: list[str], seed: int, validation: float, test: float) -> dict[str, list[str]]:
    order = sorted(exams)
    random.Random(seed).shuffle(order)
    n_test = max(1, round(test * len(order)))
    n_validation = max(1, round(validation * len(order)))
    return {
        "test": order[:n_test],
        "validation": order[n_test : n_test + n_validation],
        "train": order[n_test + n_validation :],
    }


class PrintingReporter:
    def __init__(self) -> None:
        self.last = 0.0

    def progress(self, fraction: float, step: str | None = None, metrics: dict | None = None) -> None:
        now = time.monotonic()
        if now - self.last > 30 or fraction >= 1.0:
            self.last = now
            print(f"  [{fraction * 100:5.1f}%] {step}", flush=True)

    def log(self, line: str) -> None:
        print(line, flush=True)

    def check_cancelled(self) -> None:
        pass


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("phantom", type=Path, nargs="+", help="folder(s) written by manage.py phantom")
    for name, value in CPU_TRAINING.items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    parser.add_argument("--seed", type=int, default=0, help="training seed and exam split seed")
    parser.add_argument("--validation-fraction", type=float, default=0.15)
    parser.add_argument("--test-fraction", type=float, default=0.15)
    parser.add_argument("--no-augment", dest="augment", action="store_false", help="train without TrivialAugmentWide")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--workers", type=int, default=2, help="processes decoding the cohort (first run only)")
    args = parser.parse_args()

    started = time.monotonic()
    exams = {name: frames for folder in args.phantom for name, frames in load_cohort(folder, args.workers).items()}
    splits = split_exams(list(exams), args.seed, args.validation_fraction, args.test_fraction)
    items: dict[str, list[ImageItem]] = {}
    for split, names in splits.items():
        items[split] = [
            ImageItem(key=key, label=label, load=lambda data=data: data)
            for name in names
            for key, label, data in exams[name]
        ]
        counts = Counter(CLASS_NAMES[item.label] for item in items[split])
        print(f"{split}: {len(names)} exams, {len(items[split])} frames, {dict(sorted(counts.items()))}")

    params = TrainKeyframeParameters(
        **{name: getattr(args, name) for name in CPU_TRAINING}, seed=args.seed, augment=args.augment, device="cpu"
    )
    print(f"parameters: {params.model_dump(exclude_defaults=True)}")
    with tempfile.TemporaryDirectory(prefix="keyframe-experiment-") as checkpoints:
        train_started = time.monotonic()
        result = train_keyframe_model(
            params,
            items["train"],
            items["validation"],
            items["test"],
            checkpoint_dir=Path(checkpoints),
            reporter=PrintingReporter(),
            threads=args.threads,
        )
        train_seconds = time.monotonic() - train_started
    metrics = result.metrics
    print("test confusion matrix (rows true, columns predicted):", *CLASS_NAMES, sep="\n  ")
    for name, row in zip(CLASS_NAMES, metrics["confusion_matrix"], strict=True):
        print(f"  {name:>10} {row}")
    print(
        f"laterality_f1={metrics['laterality_f1']:.3f} keyframe_f1={metrics['keyframe_f1']:.3f} "
        f"keyframe_auroc={metrics['keyframe_auroc'] or float('nan'):.3f} macro_f1={metrics['macro_f1']:.3f} "
        f"ece={metrics['ece']:.3f} epochs={metrics['epochs_run']} best_epoch={metrics['best_epoch']} "
        f"train_seconds={train_seconds:.0f} seconds={time.monotonic() - started:.0f}"
    )


if __name__ == "__main__":
    main()
