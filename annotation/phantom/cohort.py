"""The plan of each phantom exam: who the patient is, what the arteries show, which runs.

An exam's plan depends only on the cohort seed and the exam's number, so exams can be
generated in any order and in parallel and still come out the same.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from annotation.phantom.anatomy import segments_present
from annotation.phantom.findings import (
    AHA_SEGMENTS,
    Artery,
    Dominance,
    Findings,
    Lesion,
    PatientProfile,
    TreatmentDecision,
    Vessel,
    recommended_treatment,
)
from annotation.phantom.projection import LCA_VIEWS, RCA_VIEWS, CArmView, Geometry
from annotation.phantom.reports import sample_patient_profile

#: Frame rates cath labs acquire coronary runs at.
FRAME_RATES = (10.0, 12.5, 15.0, 25.0, 30.0)

# Where lesions are found, roughly as often as in a diagnostic cath population: proximal and
# mid LAD most, then RCA and LCx; the left main rarely.
LESION_SEGMENT_WEIGHTS = {
    1: 8, 2: 7, 3: 4, 4: 2, 5: 2, 6: 12, 7: 10, 8: 2, 9: 4, 10: 1, 11: 6, 12: 4, 13: 4, 14: 1, 15: 1,
}  # fmt: skip
SEVERITY_WEIGHTS = {25: 3, 50: 4, 75: 5, 90: 5, 99: 3, 100: 1}


@dataclass(frozen=True)
class PixelFormat:
    bits_allocated: int  # 8 or 16
    bits_stored: int  # 8, or 10-12
    rle: bool


@dataclass(frozen=True)
class LoopPlan:
    artery: Artery
    view: CArmView
    geometry: Geometry
    frames: int
    frame_rate: float
    heart_rate_bpm: float
    injection_start_s: float
    flow_speed_mm_s: float
    plateau_s: float
    washout_s: float
    filled: bool  # False: a catheter-only or missed-ostium run, no coronary filling
    pixel_format: PixelFormat
    seed: int


@dataclass(frozen=True)
class ExamPlan:
    cohort_seed: int
    number: int
    findings: Findings
    profile: PatientProfile
    decision: TreatmentDecision
    loops: tuple[LoopPlan, ...]
    seed: int

    @property
    def exam_id(self) -> str:
        return f"phantom-{self.cohort_seed}-{self.number:04d}"


def exam_rng(cohort_seed: int, number: int, purpose: str) -> np.random.Generator:
    """An independent random stream per exam and purpose (plan, images, reports)."""
    purposes = {"plan": 1, "images": 2, "profile": 3, "reports": 4, "identity": 5}
    return np.random.default_rng([cohort_seed, number, purposes[purpose]])


def sample_findings(rng: np.random.Generator) -> Findings:
    dominance = rng.choice([Dominance.RIGHT, Dominance.LEFT, Dominance.CO], p=[0.8, 0.1, 0.1])
    lesion_count = int(rng.choice([0, 1, 2, 3, 4], p=[0.2, 0.3, 0.25, 0.18, 0.07]))
    segments = np.array(list(LESION_SEGMENT_WEIGHTS))
    weights = np.array(list(LESION_SEGMENT_WEIGHTS.values()), dtype=float)
    # Only segments this patient has: no right-sided PDA (4) in a left-dominant heart, no
    # LCx PDA (15) in a right- or co-dominant one.
    present = segments_present(Artery.LCA, Dominance(dominance)) | segments_present(Artery.RCA, Dominance(dominance))
    weights[~np.isin(segments, list(present))] = 0
    chosen = rng.choice(segments, size=lesion_count, replace=False, p=weights / weights.sum())
    severities = np.array(list(SEVERITY_WEIGHTS))
    severity_p = np.array(list(SEVERITY_WEIGHTS.values()), dtype=float)
    lesions = []
    for segment in sorted(int(s) for s in chosen):
        severity = int(rng.choice(severities, p=severity_p / severity_p.sum()))
        if AHA_SEGMENTS[segment][0] is Vessel.LM and severity == 100:
            severity = 75  # a total left main occlusion is rarely seen alive in a diagnostic run
        lesions.append(
            Lesion(
                segment=segment,
                stenosis_pct=severity,
                length_mm=float(np.round(rng.uniform(5, 20), 1)),
                position=float(np.round(rng.uniform(0.25, 0.75), 2)),
            )
        )
    significant = [i for i, lesion in enumerate(lesions) if lesion.significant]
    if significant:
        # The culprit is the tightest significant lesion (ties: the most proximal).
        culprit = max(significant, key=lambda i: (lesions[i].stenosis_pct, -lesions[i].segment))
        lesions[culprit] = Lesion(**{**lesions[culprit].__dict__, "culprit": True})
    lvef = int(rng.integers(55, 70)) if not significant else int(rng.integers(35, 65))
    return Findings(lesions=tuple(lesions), dominance=Dominance(dominance), lvef_pct=lvef)


def _pixel_format(rng: np.random.Generator) -> PixelFormat:
    kind = rng.choice(["8bit", "16bit", "rle8", "rle16"], p=[0.45, 0.3, 0.1, 0.15])
    if kind in ("8bit", "rle8"):
        return PixelFormat(8, 8, rle=kind == "rle8")
    return PixelFormat(16, int(rng.choice([10, 12])), rle=kind == "rle16")


def _loop_plan(artery: Artery, view: CArmView, filled: bool, rng: np.random.Generator) -> LoopPlan:
    frame_rate = float(rng.choice(FRAME_RATES, p=[0.1, 0.2, 0.4, 0.15, 0.15]))
    injection_start = float(rng.uniform(0.4, 1.2))
    plateau = float(rng.uniform(1.0, 2.2))
    washout = float(rng.uniform(1.0, 1.8))
    duration = injection_start + 0.6 + plateau + washout + float(rng.uniform(0.2, 0.8))
    frames = int(np.clip(round(duration * frame_rate), 24, 120))
    return LoopPlan(
        artery=artery,
        view=view,
        geometry=Geometry(
            sid_mm=float(np.round(rng.uniform(950, 1150))),
            sod_mm=float(np.round(rng.uniform(700, 790))),
        ),
        frames=frames,
        frame_rate=frame_rate,
        heart_rate_bpm=float(np.round(rng.uniform(55, 95))),
        injection_start_s=injection_start,
        flow_speed_mm_s=float(rng.uniform(110, 220)),
        plateau_s=plateau,
        washout_s=washout,
        filled=filled,
        pixel_format=_pixel_format(rng),
        seed=int(rng.integers(0, 2**31 - 1)),
    )


def sample_exam_plan(cohort_seed: int, number: int) -> ExamPlan:
    rng = exam_rng(cohort_seed, number, "plan")
    findings = sample_findings(rng)
    profile = sample_patient_profile(findings, exam_rng(cohort_seed, number, "profile"))
    loops: list[LoopPlan] = []
    lca_views = rng.choice(len(LCA_VIEWS), size=int(rng.integers(3, len(LCA_VIEWS) + 1)), replace=False)
    rca_views = rng.choice(len(RCA_VIEWS), size=int(rng.integers(2, len(RCA_VIEWS) + 1)), replace=False)
    # The usual order of a diagnostic run: left coronary first, then right.
    for index in sorted(int(i) for i in lca_views):
        loops.append(_loop_plan(Artery.LCA, LCA_VIEWS[index], True, rng))
    for index in sorted(int(i) for i in rca_views):
        loops.append(_loop_plan(Artery.RCA, RCA_VIEWS[index], True, rng))
    if rng.random() < 0.3:
        # A run without coronary filling: the catheter missed the ostium or only test-puffed.
        artery = Artery.RCA if rng.random() < 0.6 else Artery.LCA
        views = RCA_VIEWS if artery is Artery.RCA else LCA_VIEWS
        failed = _loop_plan(artery, views[int(rng.integers(len(views)))], False, rng)
        loops.insert(int(rng.integers(0, len(loops) + 1)), failed)
    return ExamPlan(
        cohort_seed=cohort_seed,
        number=number,
        findings=findings,
        profile=profile,
        decision=recommended_treatment(findings),
        loops=tuple(loops),
        seed=int(rng.integers(0, 2**31 - 1)),
    )
