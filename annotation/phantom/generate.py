"""Generate phantom exams: DICOM runs plus one ground-truth JSON per exam.

Each exam is independent (its own random streams, from the cohort seed and its number), so a
cohort is generated in parallel processes and still comes out byte for byte the same.

Ground truth per frame:
- laterality: the artery the catheter is engaged in, for every frame of the run, including the
  frames before contrast and runs that never filled;
- key-frame category, as the design defines it, from how much of the tree is opacified and how
  sharp the frame is: ``better`` when the tree is essentially fully opacified and the frame is
  sharp; ``other`` when there is no diagnostic coronary content (before contrast, after it has
  gone, a run that did not fill); ``bad`` in between (partial filling, wash-out, motion blur).
"""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from annotation.phantom.anatomy import CoronaryTree, build_coronary_tree
from annotation.phantom.cohort import ExamPlan, LoopPlan, exam_rng, sample_exam_plan
from annotation.phantom.dicom_writer import fake_identity, phantom_uid, write_loop
from annotation.phantom.findings import Artery, as_json
from annotation.phantom.rendering import FrameTruth, LoopSpec, render_loop
from annotation.phantom.reports import write_reports

#: 2: motion blur makes a frame ``bad`` only from a visible smear (BETTER_MIN_SHARPNESS 0.7 -> 0.45).
GENERATOR_VERSION = 2

# Key-frame category thresholds (see the module docstring).
BETTER_MIN_OPACIFIED = 0.85
#: Motion blur spoils a frame once the smear reaches about two image pixels: these geometries
#: image about 0.21 mm of anatomy per pixel (0.3 mm detector pixels, magnification 1.3-1.5), and
#: sharpness exp(-smear / 0.55 mm) = 0.45 is a smear of 0.44 mm. (Version 1 used 0.7, a smear of
#: 0.2 mm: under one pixel, which no reader can see, so a quarter of the fully opacified frames
#: were "bad" for a blur that is not in the image.)
BETTER_MIN_SHARPNESS = 0.45
OTHER_MAX_OPACIFIED = 0.1


def keyframe_category(truth: FrameTruth, filled: bool) -> str:
    if not filled or truth.opacified_fraction < OTHER_MAX_OPACIFIED:
        return "other"
    if truth.opacified_fraction >= BETTER_MIN_OPACIFIED and truth.sharpness >= BETTER_MIN_SHARPNESS:
        return "better"
    return "bad"


def loop_spec(plan: ExamPlan, loop: LoopPlan) -> LoopSpec:
    """The renderer's spec of a run. Its seed is the exam's: one patient, one chest (and one
    collimator) across all runs of the exam; the run's own randomness comes from ``loop.seed``."""
    return LoopSpec(
        view=loop.view,
        geometry=loop.geometry,
        frames=loop.frames,
        frame_rate=loop.frame_rate,
        heart_rate_bpm=loop.heart_rate_bpm,
        injection_start_s=loop.injection_start_s,
        flow_speed_mm_s=loop.flow_speed_mm_s,
        plateau_s=loop.plateau_s,
        washout_s=loop.washout_s,
        filled=loop.filled,
        seed=plan.seed,
    )


def exam_trees(plan: ExamPlan) -> dict[Artery, CoronaryTree]:
    """One heart per exam: both arteries are built from the same random stream (the same
    heart size, position and shape), and every run of the exam shows the same trees."""
    return {
        artery: build_coronary_tree(
            artery, plan.findings.dominance, plan.findings.lesions, np.random.default_rng([plan.seed, 0])
        )
        for artery in (Artery.LCA, Artery.RCA)
    }


def iter_loop_frames(
    plan: ExamPlan, trees: dict[Artery, CoronaryTree], loop: LoopPlan
) -> Iterator[tuple[np.ndarray, FrameTruth]]:
    yield from render_loop(trees[loop.artery], loop_spec(plan, loop), np.random.default_rng(loop.seed))


def generate_exam(cohort_seed: int, number: int, out_dir: Path) -> Path:
    """Write one exam's runs and its ground truth; return the ground-truth JSON path."""
    plan = sample_exam_plan(cohort_seed, number)
    identity = fake_identity(plan, exam_rng(cohort_seed, number, "identity"))
    reports = write_reports(plan.profile, plan.findings, plan.decision, exam_rng(cohort_seed, number, "reports"))
    exam_dir = out_dir / plan.exam_id
    exam_dir.mkdir(parents=True, exist_ok=True)
    trees = exam_trees(plan)

    loops_truth = []
    for loop_number, loop in enumerate(plan.loops):
        frames: list[np.ndarray] = []
        truths: list[FrameTruth] = []
        for frame, truth in iter_loop_frames(plan, trees, loop):
            frames.append(frame)
            truths.append(truth)
        file_name = f"run{loop_number + 1:02d}_{loop.artery.value}.dcm"
        write_loop(exam_dir / file_name, plan, loop_number, loop, identity, frames)
        loops_truth.append(
            {
                "file": file_name,
                "sop_instance_uid": phantom_uid(plan.cohort_seed, plan.number, loop_number, "instance"),
                "artery": loop.artery.value,
                "view": loop.view.name,
                "primary_angle": loop.view.primary_deg,
                "secondary_angle": loop.view.secondary_deg,
                "filled": loop.filled,
                "plan": as_json(loop),
                "frames": [
                    {
                        "index": index,
                        "time_s": round(index / loop.frame_rate, 4),
                        "laterality": loop.artery.value,
                        "category": keyframe_category(truth, loop.filled),
                        "opacified_fraction": round(float(truth.opacified_fraction), 4),
                        "mean_concentration": round(float(truth.mean_concentration), 4),
                        "sharpness": round(float(truth.sharpness), 4),
                        "motion_px_per_frame": round(float(truth.motion_px_per_frame), 3),
                    }
                    for index, truth in enumerate(truths)
                ],
            }
        )

    truth_path = exam_dir / "ground_truth.json"
    document = {
        "generator_version": GENERATOR_VERSION,
        "exam_id": plan.exam_id,
        "cohort_seed": cohort_seed,
        "number": number,
        "study_instance_uid": phantom_uid(plan.cohort_seed, plan.number, "study"),
        "fake_identity": as_json(identity) | {"study_date": identity.study_date.isoformat()},
        "patient": as_json(plan.profile),
        "findings": as_json(plan.findings),
        "significant_lesions": [as_json(lesion) for lesion in plan.findings.significant_lesions],
        "diseased_vessels": [v.value for v in plan.findings.diseased_vessels],
        "left_main_disease": plan.findings.left_main_disease,
        "treatment": as_json(plan.decision),
        "reports": {kind: {lang: reports[(kind, lang)] for lang in ("ja", "en")} for kind, _ in sorted(reports)},
        "loops": loops_truth,
    }
    truth_path.write_text(json.dumps(document, ensure_ascii=False, indent=1, sort_keys=True), encoding="utf-8")
    return truth_path


def generate_cohort(exams: int, seed: int, out_dir: Path, workers: int = 1) -> list[Path]:
    """Generate exams 0..exams-1 of the cohort ``seed``; in ``workers`` processes when > 1."""
    out_dir.mkdir(parents=True, exist_ok=True)
    if workers <= 1:
        return [generate_exam(seed, number, out_dir) for number in range(exams)]
    # Spawned, not forked: the caller may be a multi-threaded server or test process, and the
    # generator needs nothing from it (no Django, no open connections).
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(generate_exam, [seed] * exams, range(exams), [out_dir] * exams))
