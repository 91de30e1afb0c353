"""What a phantom exam shows: the patient, the lesions, and the treatment they call for.

These records are the single source of truth of a phantom exam: the anatomy narrows its
vessels where the lesions are, the renderer draws them, the reports describe them, and the
ground truth JSON stores them. Severity follows the AHA grading Japanese cath labs report
(25, 50, 75, 90, 99 and 100 % for a total occlusion); segments follow the AHA 15-segment model.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum


class Vessel(StrEnum):
    RCA = "RCA"
    LM = "LM"  # left main trunk (LMT in Japanese reports)
    LAD = "LAD"
    LCX = "LCx"


class Artery(StrEnum):
    """The artery the catheter is engaged in: the laterality of a run."""

    LCA = "LCA"
    RCA = "RCA"


#: AHA segment -> (vessel, artery it is filled from, name)
AHA_SEGMENTS: dict[int, tuple[Vessel, Artery, str]] = {
    1: (Vessel.RCA, Artery.RCA, "proximal RCA"),
    2: (Vessel.RCA, Artery.RCA, "mid RCA"),
    3: (Vessel.RCA, Artery.RCA, "distal RCA"),
    4: (Vessel.RCA, Artery.RCA, "PDA / posterolateral branch"),  # 4PD and 4AV
    5: (Vessel.LM, Artery.LCA, "left main trunk"),
    6: (Vessel.LAD, Artery.LCA, "proximal LAD"),
    7: (Vessel.LAD, Artery.LCA, "mid LAD"),
    8: (Vessel.LAD, Artery.LCA, "distal LAD"),
    9: (Vessel.LAD, Artery.LCA, "first diagonal"),
    10: (Vessel.LAD, Artery.LCA, "second diagonal"),
    11: (Vessel.LCX, Artery.LCA, "proximal LCx"),
    12: (Vessel.LCX, Artery.LCA, "obtuse marginal"),
    13: (Vessel.LCX, Artery.LCA, "distal LCx"),
    14: (Vessel.LCX, Artery.LCA, "posterolateral branch of LCx"),
    15: (Vessel.LCX, Artery.LCA, "posterior descending branch of LCx"),
}

AHA_SEVERITIES = (25, 50, 75, 90, 99, 100)


def is_significant(segment: int, stenosis_pct: int) -> bool:
    """Significant: >= 75 % (AHA grading), or >= 50 % in the left main trunk."""
    threshold = 50 if AHA_SEGMENTS[segment][0] is Vessel.LM else 75
    return stenosis_pct >= threshold


@dataclass(frozen=True)
class Lesion:
    segment: int  # AHA 1-15
    stenosis_pct: int  # one of AHA_SEVERITIES; 100 is a total occlusion
    length_mm: float
    position: float  # 0-1 along the segment, where the narrowest point lies
    culprit: bool = False

    def __post_init__(self) -> None:
        if self.segment not in AHA_SEGMENTS:
            raise ValueError(f"AHA segment {self.segment} does not exist")
        if self.stenosis_pct not in AHA_SEVERITIES:
            raise ValueError(f"stenosis {self.stenosis_pct} % is not an AHA grade")

    @property
    def vessel(self) -> Vessel:
        return AHA_SEGMENTS[self.segment][0]

    @property
    def artery(self) -> Artery:
        return AHA_SEGMENTS[self.segment][1]

    @property
    def significant(self) -> bool:
        return is_significant(self.segment, self.stenosis_pct)

    @property
    def occluded(self) -> bool:
        return self.stenosis_pct == 100


class Dominance(StrEnum):
    RIGHT = "right"
    LEFT = "left"
    CO = "co-dominant"


@dataclass(frozen=True)
class PatientProfile:
    """The clinical picture before the procedure (codes; the reports put them in words)."""

    age: int
    sex: str  # "M" or "F"
    symptoms: tuple[str, ...]  # e.g. "exertional_chest_pain", "rest_angina", "dyspnoea", "none"
    risk_factors: tuple[str, ...]  # e.g. "hypertension", "diabetes", "dyslipidaemia", "smoking", "ckd"
    noninvasive_tests: tuple[tuple[str, str], ...]  # (test, result), e.g. ("treadmill", "positive")
    indication: str  # e.g. "stable_angina", "unstable_angina", "silent_ischaemia", "pre_operative"


class Treatment(StrEnum):
    PCI = "PCI"
    CABG_HEART_TEAM = "CABG (heart team)"
    MEDICAL = "optimal medical therapy"


@dataclass(frozen=True)
class Findings:
    lesions: tuple[Lesion, ...]
    dominance: Dominance
    lvef_pct: int = 60

    @property
    def significant_lesions(self) -> tuple[Lesion, ...]:
        return tuple(lesion for lesion in self.lesions if lesion.significant)

    @property
    def left_main_disease(self) -> bool:
        return any(lesion.vessel is Vessel.LM for lesion in self.significant_lesions)

    @property
    def diseased_vessels(self) -> tuple[Vessel, ...]:
        """Vessels (RCA, LAD, LCx) with a significant lesion, in that order. Left main
        disease is reported on its own and does not count as a vessel here."""
        vessels = {lesion.vessel for lesion in self.significant_lesions if lesion.vessel is not Vessel.LM}
        return tuple(v for v in (Vessel.RCA, Vessel.LAD, Vessel.LCX) if v in vessels)

    @property
    def culprit(self) -> Lesion | None:
        return next((lesion for lesion in self.lesions if lesion.culprit), None)


@dataclass(frozen=True)
class TreatmentDecision:
    treatment: Treatment
    target_segments: tuple[int, ...] = field(default=())
    reason: str = ""


def recommended_treatment(findings: Findings) -> TreatmentDecision:
    """Simple guideline logic, the rule every phantom treatment plan follows:

    - left main disease or three-vessel disease: heart-team discussion of CABG;
    - one- or two-vessel disease: PCI of the significant lesions;
    - nothing significant: optimal medical therapy.
    """
    significant = findings.significant_lesions
    if findings.left_main_disease or len(findings.diseased_vessels) == 3:
        reason = "left main disease" if findings.left_main_disease else "three-vessel disease"
        return TreatmentDecision(
            Treatment.CABG_HEART_TEAM, tuple(sorted(lesion.segment for lesion in significant)), reason
        )
    if significant:
        reason = f"{len(findings.diseased_vessels)}-vessel disease"
        return TreatmentDecision(Treatment.PCI, tuple(sorted(lesion.segment for lesion in significant)), reason)
    return TreatmentDecision(Treatment.MEDICAL, (), "no significant stenosis")


def as_json(value: object) -> object:
    """Dataclasses and enums as plain JSON values, for the ground truth file."""
    if hasattr(value, "__dataclass_fields__"):
        return {key: as_json(item) for key, item in asdict(value).items()}  # type: ignore[arg-type]
    if isinstance(value, dict):
        return {str(key): as_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [as_json(item) for item in value]
    if isinstance(value, StrEnum):
        return value.value
    return value
