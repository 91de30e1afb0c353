"""Phantom reports: six texts per exam that state exactly the phantom's findings and follow its plan."""

from __future__ import annotations

import dataclasses
import re
from collections import Counter

import numpy as np
import pytest

from annotation.models import DocumentKind
from annotation.phantom.findings import (
    AHA_SEVERITIES,
    Dominance,
    Findings,
    Lesion,
    PatientProfile,
    Treatment,
    TreatmentDecision,
    recommended_treatment,
)
from annotation.phantom.reports import (
    DIAGNOSIS_SUMMARY,
    KINDS,
    LANGUAGES,
    PRE_PROCEDURE_REPORT,
    TREATMENT_PLAN,
    mentioned_lesions,
    sample_patient_profile,
    write_reports,
)


def lesion(segment: int, pct: int, culprit: bool = False) -> Lesion:
    return Lesion(segment=segment, stenosis_pct=pct, length_mm=10.0, position=0.5, culprit=culprit)


CASES = {
    "no_disease": Findings(lesions=(), dominance=Dominance.RIGHT, lvef_pct=62),
    "1vd_lad_culprit": Findings(lesions=(lesion(6, 90, culprit=True),), dominance=Dominance.RIGHT, lvef_pct=58),
    "2vd": Findings(
        lesions=(lesion(6, 90, culprit=True), lesion(13, 75), lesion(2, 25), lesion(7, 50)),
        dominance=Dominance.RIGHT,
        lvef_pct=55,
    ),
    "3vd": Findings(
        lesions=(lesion(1, 75), lesion(7, 90), lesion(11, 99, culprit=True)), dominance=Dominance.LEFT, lvef_pct=38
    ),
    "left_main_75": Findings(lesions=(lesion(5, 75), lesion(3, 50)), dominance=Dominance.RIGHT, lvef_pct=60),
    "occlusion_seg1": Findings(lesions=(lesion(1, 100, culprit=True),), dominance=Dominance.CO, lvef_pct=45),
}

# Clinical abbreviations and the few English loanwords Japanese cath-lab charts write in Latin letters.
JAPANESE_CHART_LATIN = {
    "S", "O", "A", "P", "LAD", "LCx", "RCA", "LMT", "VD", "PCI", "CABG", "DES", "DAPT", "OMT", "CAG", "LVEF",
    "UCG", "CT", "CCTA", "CKD", "IVUS", "LDL", "C", "mg", "dL", "SYNTAX", "ARNI", "MRA", "SGLT", "ST",
    "T", "NSTEMI", "staged", "asynergy", "n", "p", "co", "dominant",
}  # fmt: skip
ENGLISH_WORDS_NEVER_IN_JAPANESE = ("stenosis", "culprit", "lesion", "occlusion", "the ", "planned", "disease")


def reports_for(findings: Findings, seed: int) -> tuple[PatientProfile, dict[tuple[str, str], str]]:
    rng = np.random.default_rng(seed)
    profile = sample_patient_profile(findings, rng)
    return profile, write_reports(profile, findings, recommended_treatment(findings), rng)


def japanese_share(text: str) -> float:
    """Share of the letters that are kana or kanji (digits, punctuation and spaces not counted)."""
    letters = [char for char in text if char.isalpha()]
    japanese = [char for char in letters if "\u3040" <= char <= "\u30ff" or "\u4e00" <= char <= "\u9fff"]
    return len(japanese) / len(letters)


def has_cjk(text: str) -> bool:
    return any("\u3000" <= char <= "\u9fff" or "\uff00" <= char <= "\uffef" for char in text)


def assert_lesions_stated(findings: Findings, texts: dict[tuple[str, str], str]) -> None:
    expected = sorted((x.segment, x.stenosis_pct) for x in findings.lesions)
    english, japanese = texts[DIAGNOSIS_SUMMARY, "en"], texts[DIAGNOSIS_SUMMARY, "ja"]
    assert sorted(mentioned_lesions(english, "en")) == expected, english
    assert sorted(mentioned_lesions(japanese, "ja")) == expected, japanese
    # The documented format, checked without the module's own pattern.
    for x in findings.significant_lesions:
        en_severity = "total occlusion" if x.occluded else f"{x.stenosis_pct}%"
        assert re.search(rf"(#|segment ){x.segment}(?!\d)[^.\n#]*?{en_severity}", english, re.IGNORECASE), english
        ja_severity = "(完全閉塞|100%)" if x.occluded else f"{x.stenosis_pct}%"
        assert re.search(rf"#{x.segment}(?!\d)[^。\n#]*?{ja_severity}", japanese), japanese


def assert_vessel_count_stated(findings: Findings, texts: dict[tuple[str, str], str]) -> None:
    english, japanese = texts[DIAGNOSIS_SUMMARY, "en"], texts[DIAGNOSIS_SUMMARY, "ja"]
    n = len(findings.diseased_vessels)
    if n:
        assert f"{n}VD" in english, english
        assert f"{n}VD" in japanese, japanese
    if findings.left_main_disease:
        assert "left main" in english.lower(), english
        assert "LMT" in japanese, japanese
    if not findings.significant_lesions:
        assert "no significant" in english.lower(), english
        assert "有意狭窄なし" in japanese, japanese
    if findings.culprit is not None:
        assert "culprit" in english, english
        assert "責任病変" in japanese, japanese


def assert_plan_follows(decision: TreatmentDecision, texts: dict[tuple[str, str], str]) -> None:
    english, japanese = texts[TREATMENT_PLAN, "en"], texts[TREATMENT_PLAN, "ja"]
    if decision.treatment is Treatment.PCI:
        for text in (english, japanese):
            assert "PCI" in text, text
            assert "CABG" not in text, text
        assert "DES" in english or "drug-eluting" in english, english
        assert "DAPT" in english or "antiplatelet" in english.lower(), english
        assert "DAPT" in japanese, japanese
    elif decision.treatment is Treatment.CABG_HEART_TEAM:
        assert "CABG" in english, english
        assert re.search(r"heart[- ]team", english, re.IGNORECASE), english
        assert "CABG" in japanese, japanese
        assert "ハートチーム" in japanese, japanese
        assert "PCI" not in english, english
        assert "PCI" not in japanese, japanese
        # The reason is named.
        if decision.reason == "left main disease":
            assert "left main" in english.lower(), english
            assert "LMT" in japanese, japanese
        else:
            assert re.search(r"three-vessel|3VD", english, re.IGNORECASE), english
            assert re.search("3VD|3枝", japanese), japanese
    else:
        assert "medical therapy" in english.lower(), english
        assert "薬物療法" in japanese, japanese
        for text in (english, japanese):
            assert "PCI" not in text, text
            assert "CABG" not in text, text
    for segment in decision.target_segments:
        assert re.search(rf"#{segment}(?!\d)", english), english
        assert re.search(rf"#{segment}(?!\d)", japanese), japanese


def assert_reads_as_japanese_chart(texts: dict[tuple[str, str], str]) -> None:
    # More than half of the letters are kana or kanji. A summary alone can be mostly Latin
    # ("LCx #15 90%。1VD（LCx）。" is a whole, realistic one), so it is only counted with the
    # other two; every document may use Latin letters only for the abbreviations charts use.
    assert japanese_share("".join(texts[kind, "ja"] for kind in KINDS)) > 0.5
    assert japanese_share(texts[PRE_PROCEDURE_REPORT, "ja"]) > 0.5
    assert japanese_share(texts[TREATMENT_PLAN, "ja"]) > 0.5
    for kind in KINDS:
        text = texts[kind, "ja"]
        stray = set(re.findall(r"[A-Za-z]+", text)) - JAPANESE_CHART_LATIN
        assert not stray, (stray, text)
        for word in ENGLISH_WORDS_NEVER_IN_JAPANESE:
            assert word not in text, text
    assert re.search("歳.?(男性|女性)", texts[PRE_PROCEDURE_REPORT, "ja"])
    assert "CAG" in texts[PRE_PROCEDURE_REPORT, "ja"]
    assert re.search("優位|バランス型|均衡型", texts[DIAGNOSIS_SUMMARY, "ja"])
    assert re.search("狭窄|閉塞|病変|VD", texts[DIAGNOSIS_SUMMARY, "ja"])
    assert re.search("予定|方針|検討|継続", texts[TREATMENT_PLAN, "ja"])


def test_kinds_are_the_document_kinds_of_the_model() -> None:
    assert set(KINDS) == set(DocumentKind.values)


@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_reports_state_the_findings_and_follow_the_plan(case: str, seed: int) -> None:
    findings = CASES[case]
    profile, texts = reports_for(findings, seed)

    assert set(texts) == {(kind, language) for kind in KINDS for language in LANGUAGES}
    assert all(text.strip() for text in texts.values())
    assert_lesions_stated(findings, texts)
    assert_vessel_count_stated(findings, texts)
    assert_plan_follows(recommended_treatment(findings), texts)
    assert_reads_as_japanese_chart(texts)
    for kind in KINDS:
        assert not has_cjk(texts[kind, "en"]), texts[kind, "en"]
    for language in LANGUAGES:
        pre = texts[PRE_PROCEDURE_REPORT, language]
        assert f"LVEF {findings.lvef_pct}%" in pre, pre
        assert str(profile.age) in pre, pre


def test_plans_name_the_treatment_the_rule_calls_for() -> None:
    decisions = {case: recommended_treatment(findings).treatment for case, findings in CASES.items()}
    assert decisions == {
        "no_disease": Treatment.MEDICAL,
        "1vd_lad_culprit": Treatment.PCI,
        "2vd": Treatment.PCI,
        "3vd": Treatment.CABG_HEART_TEAM,
        "left_main_75": Treatment.CABG_HEART_TEAM,
        "occlusion_seg1": Treatment.PCI,
    }
    _, texts = reports_for(CASES["occlusion_seg1"], 0)
    assert "total occlusion" in texts[DIAGNOSIS_SUMMARY, "en"]
    assert re.search("#1(?!\\d).*(完全閉塞|100%)", texts[DIAGNOSIS_SUMMARY, "ja"])


def test_the_plan_follows_the_decision_it_is_given() -> None:
    # A decision that differs from the rule (a surgeon's call) is written as given.
    findings = CASES["2vd"]
    decision = TreatmentDecision(Treatment.CABG_HEART_TEAM, (6, 13), "three-vessel disease")
    rng = np.random.default_rng(5)
    texts = write_reports(sample_patient_profile(findings, rng), findings, decision, rng)
    assert_plan_follows(decision, texts)


def test_same_seed_gives_identical_texts() -> None:
    for findings in CASES.values():
        assert reports_for(findings, 42) == reports_for(findings, 42)


def test_different_seeds_word_the_same_findings_differently() -> None:
    findings = CASES["2vd"]
    texts = [reports_for(findings, seed)[1] for seed in range(30)]
    for language in LANGUAGES:
        summaries = {t[DIAGNOSIS_SUMMARY, language] for t in texts}
        plans = {t[TREATMENT_PLAN, language] for t in texts}
        pre_procedure = {t[PRE_PROCEDURE_REPORT, language] for t in texts}
        assert len(summaries) >= 20, summaries
        assert len(plans) >= 20
        assert len(pre_procedure) >= 20
    # Not only the words: the lesions come in more than one order.
    orders = {tuple(mentioned_lesions(t[DIAGNOSIS_SUMMARY, "en"], "en")) for t in texts}
    assert len(orders) >= 2


def test_both_languages_state_the_same_plan() -> None:
    # Drugs, devices and staging are chosen once per exam, not once per language.
    same_fact = [
        ("prasugrel", "プラスグレル"),
        ("clopidogrel", "クロピドグレル"),
        ("ivus", "IVUS"),
        ("staged", "staged"),
        ("rehabilitation", "リハビリテーション"),
        ("high-intensity statin", "ストロングスタチン"),
        ("pulmonary function", "呼吸機能"),
        ("hydration", "補液"),
        ("sglt2", "SGLT2"),
    ]
    seen: Counter[str] = Counter()
    for case in ("1vd_lad_culprit", "2vd", "3vd"):
        for seed in range(40):
            _, texts = reports_for(CASES[case], seed)
            english, japanese = texts[TREATMENT_PLAN, "en"].lower(), texts[TREATMENT_PLAN, "ja"]
            for en_word, ja_word in same_fact:
                assert (en_word in english) == (ja_word in japanese), (english, japanese)
                seen[en_word] += en_word in english
    assert all(seen[en_word] for en_word, _ in same_fact if en_word != "hydration"), seen


def test_unknown_profile_codes_are_refused() -> None:
    findings = CASES["1vd_lad_culprit"]
    rng = np.random.default_rng(0)
    profile = dataclasses.replace(sample_patient_profile(findings, rng), symptoms=("hiccups",))
    with pytest.raises(ValueError, match="hiccups"):
        write_reports(profile, findings, recommended_treatment(findings), rng)


def random_findings(rng: np.random.Generator) -> Findings:
    count = int(rng.integers(0, 6))
    segments = rng.choice(np.arange(1, 16), size=count, replace=False)
    lesions = [
        Lesion(int(s), int(rng.choice(AHA_SEVERITIES)), float(rng.uniform(5, 30)), float(rng.uniform(0.1, 0.9)))
        for s in segments
    ]
    significant = [i for i, x in enumerate(lesions) if x.significant]
    if significant and rng.random() < 0.6:
        i = significant[int(rng.integers(len(significant)))]
        lesions[i] = dataclasses.replace(lesions[i], culprit=True)
    dominance = list(Dominance)[int(rng.integers(len(Dominance)))]
    return Findings(tuple(lesions), dominance, int(rng.choice([30, 35, 40, 45, 50, 55, 60, 65, 70])))


def test_random_findings_are_reported_faithfully() -> None:
    rng = np.random.default_rng(2025)
    treatments: Counter[Treatment] = Counter()
    for _ in range(200):
        findings = random_findings(rng)
        decision = recommended_treatment(findings)
        treatments[decision.treatment] += 1
        profile = sample_patient_profile(findings, rng)
        texts = write_reports(profile, findings, decision, rng)
        assert_lesions_stated(findings, texts)
        assert_vessel_count_stated(findings, texts)
        assert_plan_follows(decision, texts)
        assert_reads_as_japanese_chart(texts)
        assert not any(has_cjk(texts[kind, "en"]) for kind in KINDS)
    # The sample reaches every branch of the rule.
    assert all(treatments[treatment] >= 20 for treatment in Treatment), treatments


def test_profiles_are_plausible_for_the_findings() -> None:
    rng = np.random.default_rng(7)
    diseased, normal = CASES["2vd"], CASES["no_disease"]
    profiles = {
        name: [sample_patient_profile(f, rng) for _ in range(400)] for name, f in (("2vd", diseased), ("no", normal))
    }
    everyone = profiles["2vd"] + profiles["no"]

    assert all(45 <= p.age <= 85 for p in everyone)
    male_share = sum(p.sex == "M" for p in everyone) / len(everyone)
    assert 0.68 <= male_share <= 0.82
    for name, findings in (("2vd", diseased), ("no", normal)):
        for p in profiles[name]:
            tests = dict(p.noninvasive_tests)
            assert tests["echo"].startswith(f"lvef:{findings.lvef_pct};")
            if p.indication in ("silent_ischaemia", "pre_operative"):
                # Without symptoms, an abnormal test is what led to the angiogram.
                assert p.symptoms == ("none",) or p.symptoms == ("dyspnoea",)
                assert any(
                    result == "positive" or result.startswith(("ischaemia", "infarct", "stenosis", "calcified"))
                    for test, result in p.noninvasive_tests
                    if test in ("treadmill", "spect", "ccta")
                ), p

    def positive_stress_share(group: list[PatientProfile]) -> float:
        results = [r for p in group for t, r in p.noninvasive_tests if t in ("treadmill", "spect")]
        return sum(r == "positive" or r.startswith("ischaemia") for r in results) / len(results)

    def typical_angina_share(group: list[PatientProfile]) -> float:
        return sum("exertional_chest_pain" in p.symptoms or "rest_angina" in p.symptoms for p in group) / len(group)

    assert positive_stress_share(profiles["2vd"]) > positive_stress_share(profiles["no"]) + 0.2
    assert typical_angina_share(profiles["2vd"]) > typical_angina_share(profiles["no"])
    assert not any(p.indication == "nstemi" for p in profiles["no"])
