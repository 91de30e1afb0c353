"""Phantom generation speed: frames per second and seconds per exam, and where the time goes.

Full generation (plan, anatomy, rendering, reports, DICOM writing, ground truth) of a few
exams, in one process, against the time the very same frames take to be written as DICOM
alone, measured in the same run. The ratio says how much of the cost is the simulation.

Usage: ``.venv/bin/python benchmarks/phantom.py [--exams 3] [--seed 11]``.
The last line reads ``frames_per_s=.. s_per_exam=.. ratio=<full / DICOM writing alone>``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SCRATCH = Path(tempfile.mkdtemp(prefix="cagvlm-bench-phantom-"))
os.environ["CAGVLM_VAR_DIR"] = str(SCRATCH / "var")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cagvlm_site.settings")

import django  # noqa: E402

django.setup()

from annotation.phantom.cohort import exam_rng, sample_exam_plan  # noqa: E402
from annotation.phantom.dicom_writer import fake_identity, write_loop  # noqa: E402
from annotation.phantom.generate import exam_trees, generate_exam, iter_loop_frames  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--exams", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()

    full_seconds = 0.0
    write_seconds = 0.0
    frames = 0
    for number in range(args.exams):
        out = SCRATCH / f"full-{number}"
        start = time.perf_counter()
        generate_exam(args.seed, number, out)
        full_seconds += time.perf_counter() - start

        # Baseline: the same frames, rendered beforehand (not timed), written as DICOM alone.
        plan = sample_exam_plan(args.seed, number)
        identity = fake_identity(plan, exam_rng(args.seed, number, "identity"))
        trees = exam_trees(plan)
        baseline_dir = SCRATCH / f"write-{number}"
        baseline_dir.mkdir()
        for loop_number, loop in enumerate(plan.loops):
            rendered = [frame for frame, _ in iter_loop_frames(plan, trees, loop)]
            frames += len(rendered)
            start = time.perf_counter()
            write_loop(baseline_dir / f"{loop_number}.dcm", plan, loop_number, loop, identity, rendered)
            write_seconds += time.perf_counter() - start
        print(
            f"exam {number}: {len(plan.loops)} runs, {sum(lp.frames for lp in plan.loops)} frames, "
            f"treatment {plan.decision.treatment.value}"
        )
    shutil.rmtree(SCRATCH, ignore_errors=True)

    frames_per_s = frames / full_seconds
    s_per_exam = full_seconds / args.exams
    ratio = full_seconds / write_seconds
    print(f"full generation: {full_seconds:.1f} s for {frames} frames ({1000 * full_seconds / frames:.1f} ms/frame)")
    print(f"DICOM writing alone: {write_seconds:.1f} s ({1000 * write_seconds / frames:.1f} ms/frame)")
    print(f"frames_per_s={frames_per_s:.1f} s_per_exam={s_per_exam:.1f} ratio={ratio:.1f}")


if __name__ == "__main__":
    main()
