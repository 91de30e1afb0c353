"""The phantom as a whole: deterministic exams that ingest, de-identify and tell the truth."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from annotation.models import CineLoop, ClinicalDocument, Exam
from annotation.phantom.cohort import exam_rng, sample_exam_plan
from annotation.phantom.findings import Treatment, recommended_treatment
from annotation.phantom.generate import generate_cohort, generate_exam
from annotation.phantom.load import load_phantom_exam
from annotation.phantom.reports import write_reports

COHORT_SEED = 7


@pytest.fixture(scope="session")
def cohort(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two exams, generated once for the whole session (in two processes)."""
    return generate_cohort(2, COHORT_SEED, tmp_path_factory.mktemp("phantom"), workers=2)


def truth_of(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8"))


def test_same_seed_writes_the_same_bytes(cohort: list[Path], tmp_path: Path) -> None:
    again = generate_exam(COHORT_SEED, 0, tmp_path)

    first_dir, second_dir = cohort[0].parent, again.parent
    names = sorted(p.name for p in first_dir.iterdir())
    assert names == sorted(p.name for p in second_dir.iterdir())
    for name in names:
        assert (first_dir / name).read_bytes() == (second_dir / name).read_bytes(), name


def test_exams_have_left_and_right_runs_in_xa_dicom(cohort: list[Path]) -> None:
    for path in cohort:
        truth = truth_of(path)
        arteries = {loop["artery"] for loop in truth["loops"]}
        assert arteries == {"LCA", "RCA"}
        for loop in truth["loops"]:
            ds = pydicom.dcmread(path.parent / loop["file"], stop_before_pixels=True)
            assert ds.SOPClassUID == pydicom.uid.XRayAngiographicImageStorage
            assert ds.Modality == "XA"
            assert int(ds.NumberOfFrames) == len(loop["frames"])
            assert (ds.Rows, ds.Columns) == (512, 512)
            assert float(ds.PositionerPrimaryAngle) == loop["primary_angle"]
            assert 10 <= 1000 / float(ds.FrameTime) <= 30
            assert {f["laterality"] for f in loop["frames"]} == {loop["artery"]}


def test_every_file_ingests_and_the_fake_identity_does_not_survive(cohort: list[Path], db, media_root: Path) -> None:
    truth = truth_of(cohort[0])
    identity = truth["fake_identity"]

    report, exam = load_phantom_exam(cohort[0])

    assert report.count("ingested") == len(truth["loops"]), [r.line for r in report.results]
    assert exam is not None
    assert exam.loops.count() == len(truth["loops"])
    family = identity["patient_name"].split("^")[0]
    needles = [
        family,
        identity["patient_id"],
        identity["institution"],
        identity["accession"],
        truth["study_instance_uid"],
    ]
    for stored in (p for p in media_root.rglob("*") if p.is_file()):
        content = stored.read_bytes()
        for needle in needles:
            assert needle.encode() not in content, (needle, stored)
    # The reports came along as documents, in both languages, and carry no identity either.
    assert ClinicalDocument.objects.filter(exam=exam, source="phantom").count() == 6
    for document in ClinicalDocument.objects.filter(exam=exam):
        assert family not in document.text
        assert identity["patient_id"] not in document.text
    # Loading again is idempotent.
    report, again = load_phantom_exam(cohort[0])
    assert again == exam
    assert report.count("duplicate") == len(truth["loops"])
    assert Exam.objects.count() == 1
    assert CineLoop.objects.count() == len(truth["loops"])


def test_better_frames_are_more_opacified_than_bad_and_bad_than_other(cohort: list[Path]) -> None:
    checked = 0
    for path in cohort:
        for loop in truth_of(path)["loops"]:
            by_category: dict[str, list[float]] = {"better": [], "bad": [], "other": []}
            for frame in loop["frames"]:
                by_category[frame["category"]].append(frame["opacified_fraction"])
            if not loop["filled"]:
                assert by_category["better"] == by_category["bad"] == []
                continue
            assert by_category["better"], loop["file"]
            assert by_category["other"], loop["file"]
            means = {k: float(np.mean(v)) for k, v in by_category.items() if v}
            if by_category["bad"]:
                assert means["better"] > means["bad"] > means["other"], (loop["file"], means)
            else:
                assert means["better"] > means["other"]
            checked += 1
    assert checked >= 6


def test_mean_intensity_dips_during_the_contrast_plateau(cohort: list[Path]) -> None:
    """As in real cines: the image darkens while the arteries are full of contrast."""
    for path in cohort:
        for loop in truth_of(path)["loops"]:
            if not loop["filled"]:
                continue
            ds = pydicom.dcmread(path.parent / loop["file"])
            means = ds.pixel_array.reshape(len(loop["frames"]), -1).mean(axis=1)
            plan = loop["plan"]
            times = np.array([f["time_s"] for f in loop["frames"]])
            before = means[times < plan["injection_start_s"]]
            plateau_start = plan["injection_start_s"] + 0.8
            plateau = means[(times >= plateau_start) & (times <= plateau_start + plan["plateau_s"] * 0.5)]
            assert len(before), loop["file"]
            assert len(plateau), loop["file"]
            assert plateau.mean() < before.mean(), (loop["file"], before.mean(), plateau.mean())


SEGMENT_IN_TEXT = re.compile(r"#(\d+)")


def test_findings_appear_in_both_diagnosis_summaries(cohort: list[Path]) -> None:
    for path in cohort:
        truth = truth_of(path)
        for language in ("ja", "en"):
            text = truth["reports"]["diagnosis_summary"][language]
            for lesion in truth["significant_lesions"]:
                assert f"#{lesion['segment']}" in text or f"segment {lesion['segment']}" in text, (language, text)
                severity = "100%" if lesion["stenosis_pct"] == 100 else f"{lesion['stenosis_pct']}%"
                occluded = ("total occlusion", "完全閉塞")
                assert severity in text or (lesion["stenosis_pct"] == 100 and any(o in text for o in occluded))


PLAN_WORDS = {
    Treatment.PCI: {"en": "PCI", "ja": "PCI"},
    Treatment.CABG_HEART_TEAM: {"en": "CABG", "ja": "CABG"},
    Treatment.MEDICAL: {"en": "medical therapy", "ja": "薬物療法"},
}


def test_treatment_plan_follows_the_rules_for_200_exams() -> None:
    """Plans, findings and report texts of a 200-exam cohort (the images are not needed)."""
    seen = set()
    for number in range(200):
        plan = sample_exam_plan(COHORT_SEED, number)
        assert plan.decision == recommended_treatment(plan.findings)
        seen.add(plan.decision.treatment)
        reports = write_reports(plan.profile, plan.findings, plan.decision, exam_rng(COHORT_SEED, number, "reports"))
        for language in ("ja", "en"):
            text = reports[("treatment_plan", language)]
            assert PLAN_WORDS[plan.decision.treatment][language] in text, (number, language, text)
            for segment in plan.decision.target_segments if plan.decision.treatment is Treatment.PCI else ():
                assert f"#{segment}" in text or f"segment {segment}" in text, (number, language, text)
    assert seen == set(Treatment)  # the cohort exercises every branch of the rule
