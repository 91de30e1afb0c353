"""The clinical documents of a phantom exam, in Japanese and English, written from its findings.

A phantom exam has three documents per language, the ones a real exam carries
(``annotation.models.DocumentKind``): the pre-procedure report (who the patient is, why the
angiogram is done), the diagnosis summary (what the angiogram shows) and the treatment plan
(what follows from it). They are written from the same records the images are drawn from, so
they state exactly the lesions the frames show and a plan that follows
``recommended_treatment``.

Japanese is written the way a Japanese interventional cardiologist writes a chart (AHA segment
numbers, "#6 90%狭窄（責任病変）", "2枝病変（2VD）", SOAP or 【見出し】 layouts, the
abbreviations LAD/LCx/RCA/LMT/PCI/CABG/DES/DAPT), not translated from the English. Each
statement has several phrasings and the layout and order vary, all chosen with the caller's
``numpy.random.Generator``: one rng state gives one set of texts, different states give
different wordings of the same facts.

Lesion format of the diagnosis summaries (``LESION_MENTION``, ``mentioned_lesions``)
-----------------------------------------------------------------------------------
Every lesion of the findings, significant or not, is mentioned exactly once in each diagnosis
summary, as its segment followed by its severity within the same clause:

- English: ``#<segment>`` or ``segment <segment>`` (any case), then, before the next ``#``,
  ``segment <n>``, full stop, semicolon or line break, either ``<pct>%`` or ``total occlusion``
  (for 100 %). Examples: "#6 (proximal LAD) 90% stenosis (culprit lesion)",
  "Segment 1 (proximal RCA): total occlusion", "mild disease at segment 2 (25%)".
- Japanese: ``#<segment>``, then, before the next ``#``, "。", "；" or line break, either
  ``<pct>%`` or ``完全閉塞``. Examples: "#6 90%狭窄（責任病変）", "LAD #7に50%の中等度狭窄",
  "#1は完全閉塞", "LMT：#5 75%".

Segments are 1-15 and percentages the AHA grades, written with ASCII "#" and "%". No other
text of a summary has a "#" or the word "segment" followed by a number. The vessel count is
written "<n>VD" in both languages, left main disease as "left main" / "LMT", and a normal
angiogram as "no significant ..." / "有意狭窄なし". Treatment plans name their target segments
as ``#<segment>``.

Patient profile codes (``sample_patient_profile``)
--------------------------------------------------
- symptoms: ``SYMPTOMS``; risk factors: ``RISK_FACTORS``; indication: ``INDICATIONS``.
- non-invasive tests, ``(test, result)`` in this order where done:
  ``treadmill``: positive | equivocal | negative;
  ``spect``: normal | equivocal | "ischaemia:<territories>" and/or "infarct:<territories>",
  joined with ";", territories anterior/lateral/inferior joined with "+";
  ``ccta``: normal | calcified (not assessable) | "stenosis:<vessels>" (RCA/LM/LAD/LCx joined
  with "+");
  ``echo`` (always): "lvef:<pct>;wma:<none | diffuse | territories>", the LVEF of the findings;
  ``troponin``: positive | negative.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from annotation.phantom.findings import (
    AHA_SEGMENTS,
    Findings,
    Lesion,
    PatientProfile,
    Treatment,
    TreatmentDecision,
    Vessel,
)

PRE_PROCEDURE_REPORT = "pre_procedure_report"
DIAGNOSIS_SUMMARY = "diagnosis_summary"
TREATMENT_PLAN = "treatment_plan"
KINDS = (PRE_PROCEDURE_REPORT, DIAGNOSIS_SUMMARY, TREATMENT_PLAN)
LANGUAGES = ("ja", "en")

SYMPTOMS = ("exertional_chest_pain", "rest_angina", "prolonged_chest_pain", "dyspnoea", "atypical_chest_pain", "none")
RISK_FACTORS = ("hypertension", "dyslipidaemia", "diabetes", "smoking", "ckd", "family_history")
INDICATIONS = ("stable_angina", "unstable_angina", "nstemi", "silent_ischaemia", "pre_operative", "lv_dysfunction")
TERRITORIES = ("anterior", "lateral", "inferior")

_SEGMENT = r"(?P<segment>1[0-5]|[1-9])(?!\d)"
_GRADE = r"(?P<pct>25|50|75|90|99|100)%"
LESION_MENTION: dict[str, re.Pattern[str]] = {
    "en": re.compile(
        rf"(?:#|\bsegment\s+){_SEGMENT}(?:(?!#|\bsegment\s+\d)[^.;\n])*?(?:{_GRADE}|(?P<occlusion>total occlusion))",
        re.IGNORECASE,
    ),
    "ja": re.compile(rf"#{_SEGMENT}(?:(?!#)[^。；\n])*?(?:{_GRADE}|(?P<occlusion>完全閉塞))"),
}


def mentioned_lesions(text: str, language: str) -> list[tuple[int, int]]:
    """(segment, stenosis %) of every lesion a diagnosis summary mentions, in text order;
    a total occlusion reads as 100. The inverse of the summary writer, and what a findings
    F1 can be computed with on generated reports."""
    return [
        (int(match["segment"]), 100 if match["occlusion"] else int(match["pct"]))
        for match in LESION_MENTION[language].finditer(text)
    ]


# -- the clinical picture ---------------------------------------------------------------------

_VESSEL_ORDER = (Vessel.RCA, Vessel.LM, Vessel.LAD, Vessel.LCX)


def _pick[T](rng: np.random.Generator, options: Sequence[T], p: Sequence[float] | None = None) -> T:
    return options[int(rng.choice(len(options), p=p))]


def _territories(segment: int) -> tuple[str, ...]:
    """Myocardial territory a segment supplies, as perfusion imaging and echo see it."""
    if segment == 5:
        return ("anterior", "lateral")
    if segment <= 4 or segment == 15:
        return ("inferior",)
    if segment <= 10:
        return ("anterior",)
    return ("lateral",)


def _ordered_territories(lesions: Sequence[Lesion]) -> list[str]:
    found = {territory for lesion in lesions for territory in _territories(lesion.segment)}
    return [territory for territory in TERRITORIES if territory in found]


def _ordered_vessels(vessels: set[Vessel]) -> list[Vessel]:
    return [vessel for vessel in _VESSEL_ORDER if vessel in vessels]


def _most_severe(lesions: Sequence[Lesion]) -> Lesion:
    return max(lesions, key=lambda lesion: (lesion.culprit, lesion.stenosis_pct))


def _sample_indication(findings: Findings, rng: np.random.Generator) -> str:
    reduced_ef = findings.lvef_pct < 50
    if findings.significant_lesions:
        weights = {
            "stable_angina": 0.50,
            "unstable_angina": 0.14,
            "nstemi": 0.06 if findings.culprit is not None else 0.0,
            "silent_ischaemia": 0.14,
            "pre_operative": 0.08,
            "lv_dysfunction": 0.10 if reduced_ef else 0.0,
        }
    else:
        weights = {
            "stable_angina": 0.55,
            "unstable_angina": 0.05,
            "nstemi": 0.0,
            "silent_ischaemia": 0.15,
            "pre_operative": 0.17,
            "lv_dysfunction": 0.15 if reduced_ef else 0.0,
        }
    total = sum(weights.values())
    return _pick(rng, list(weights), p=[weight / total for weight in weights.values()])


def _sample_symptoms(indication: str, significant: bool, rng: np.random.Generator) -> tuple[str, ...]:
    if indication == "stable_angina":
        main = "exertional_chest_pain" if significant or rng.random() < 0.6 else "atypical_chest_pain"
        return (main, "dyspnoea") if rng.random() < 0.25 else (main,)
    if indication == "unstable_angina":
        return ("rest_angina", "exertional_chest_pain") if rng.random() < 0.5 else ("rest_angina",)
    if indication == "nstemi":
        return ("prolonged_chest_pain",)
    if indication == "lv_dysfunction":
        return ("dyspnoea",)
    if indication == "pre_operative" and rng.random() < 0.15:
        return ("dyspnoea",)
    return ("none",)


def _sample_risk_factors(
    sex: str, indication: str, significant: bool, severe: bool, rng: np.random.Generator
) -> tuple[str, ...]:
    bonus = 0.15 * significant + 0.05 * severe
    probability = {
        "hypertension": 0.50 + bonus,
        "dyslipidaemia": 0.40 + bonus,
        # Silent ischaemia is typically a diabetic's presentation.
        "diabetes": 0.20 + bonus + (0.25 if indication == "silent_ischaemia" else 0.0),
        "smoking": (0.40 if sex == "M" else 0.12) + 0.10 * significant,
        "ckd": 0.10 + 0.10 * severe,
        "family_history": 0.08,
    }
    return tuple(factor for factor in RISK_FACTORS if rng.random() < probability[factor])


def _treadmill(findings: Findings, abnormal: bool, rng: np.random.Generator) -> str:
    if abnormal:
        return "positive"
    p = (0.8, 0.15, 0.05) if findings.significant_lesions else (0.4, 0.3, 0.3)
    return _pick(rng, ("positive", "equivocal", "negative"), p=p)


def _spect(findings: Findings, abnormal: bool, rng: np.random.Generator) -> str:
    significant = findings.significant_lesions
    if significant:
        # Multivessel ischaemia is often balanced and only the worst territory shows.
        seen = significant if rng.random() < 0.8 else (_most_severe(significant),)
        infarcted = [lesion for lesion in seen if lesion.occluded and rng.random() < 0.5]
        infarct = _ordered_territories(infarcted)
        ischaemia = [t for t in _ordered_territories(seen) if t not in infarct]
        parts = [f"ischaemia:{'+'.join(ischaemia)}"] if ischaemia else []
        if infarct:
            parts.append(f"infarct:{'+'.join(infarct)}")
        return ";".join(parts)
    roll = rng.random()
    if abnormal or roll < 0.4:
        # False positives, mostly inferior (diaphragmatic attenuation).
        return f"ischaemia:{_pick(rng, TERRITORIES, p=(0.3, 0.1, 0.6))}"
    return "equivocal" if roll < 0.75 else "normal"


def _ccta(findings: Findings, abnormal: bool, rng: np.random.Generator) -> str:
    significant = findings.significant_lesions
    if significant:
        if rng.random() < 0.2:
            return "calcified"
        vessels = {lesion.vessel for lesion in significant}
        if rng.random() < 0.3:  # CT overcalls moderate lesions
            vessels |= {lesion.vessel for lesion in findings.lesions if lesion.stenosis_pct == 50}
        return "stenosis:" + "+".join(vessel.value for vessel in _ordered_vessels(vessels))
    moderate = {lesion.vessel for lesion in findings.lesions if lesion.stenosis_pct >= 50}
    if moderate and (abnormal or rng.random() < 0.7):
        return "stenosis:" + "+".join(vessel.value for vessel in _ordered_vessels(moderate))
    if abnormal or rng.random() < 0.6:
        if rng.random() < 0.5:
            return "calcified"
        return f"stenosis:{_pick(rng, (Vessel.LAD, Vessel.LCX, Vessel.RCA)).value}"
    return "normal"


def _echo(findings: Findings, rng: np.random.Generator) -> str:
    significant = findings.significant_lesions
    occluded = [lesion for lesion in significant if lesion.occluded]
    if findings.lvef_pct < 50:
        # Without a culprit vessel, a low EF is a cardiomyopathy: diffuse hypokinesis.
        wall = "+".join(_ordered_territories(occluded or [_most_severe(significant)])) if significant else "diffuse"
    elif occluded and rng.random() < 0.3:
        wall = "+".join(_ordered_territories(occluded))
    else:
        wall = "none"
    return f"lvef:{findings.lvef_pct};wma:{wall}"


def _abnormal(test: str, result: str) -> bool:
    if test == "treadmill":
        return result == "positive"
    return result not in ("normal", "equivocal", "negative")


def sample_patient_profile(findings: Findings, rng: np.random.Generator) -> PatientProfile:
    """A clinical picture that leads to this angiogram: symptoms, positive tests and risk
    factors grow more likely with significant disease; asymptomatic patients come with the
    abnormal test that prompted the angiogram (silent ischaemia, pre-operative screening).
    Codes are listed in the module docstring."""
    significant = bool(findings.significant_lesions)
    severe = findings.left_main_disease or len(findings.diseased_vessels) == 3
    indication = _sample_indication(findings, rng)
    sex = "M" if rng.random() < 0.75 else "F"
    age = int(np.clip(round(rng.normal(62 + 4 * significant + 4 * severe, 9)), 45, 85))
    symptoms = _sample_symptoms(indication, significant, rng)
    risk_factors = _sample_risk_factors(sex, indication, significant, severe, rng)

    # Which tests were done before the angiogram; stress testing is not done in an ACS.
    if indication in ("stable_angina", "silent_ischaemia"):
        count = 1 + int(rng.random() < 0.4)
        chosen = set(rng.choice(["treadmill", "spect", "ccta"], size=count, replace=False, p=[0.4, 0.3, 0.3]))
    elif indication == "pre_operative":
        chosen = {_pick(rng, ("spect", "ccta"))}
    elif indication == "lv_dysfunction":
        chosen = {"ccta"} if rng.random() < 0.4 else set()
    else:
        chosen = set()
    samplers = {"treadmill": _treadmill, "spect": _spect, "ccta": _ccta}
    tests = [(test, samplers[test](findings, False, rng)) for test in ("treadmill", "spect", "ccta") if test in chosen]
    if indication in ("silent_ischaemia", "pre_operative") and not any(_abnormal(*test) for test in tests):
        # Without symptoms, an abnormal test is what brought the patient to the cath lab.
        test = tests[0][0]
        tests[0] = (test, samplers[test](findings, True, rng))
    tests.append(("echo", _echo(findings, rng)))
    if indication in ("unstable_angina", "nstemi") or rng.random() < 0.3:
        tests.append(("troponin", "positive" if indication == "nstemi" else "negative"))
    return PatientProfile(
        age=age,
        sex=sex,
        symptoms=symptoms,
        risk_factors=risk_factors,
        noninvasive_tests=tuple(tests),
        indication=indication,
    )


# -- vocabulary -------------------------------------------------------------------------------

_SYMPTOM_EN = {
    "exertional_chest_pain": ("exertional chest pain", "chest pain on exertion", "effort-related chest tightness"),
    "rest_angina": ("chest pain at rest", "rest angina", "episodes of chest pain at rest"),
    "prolonged_chest_pain": ("prolonged chest pain at rest", "persistent chest pain at rest"),
    "dyspnoea": ("exertional dyspnoea", "shortness of breath on exertion"),
    "atypical_chest_pain": ("atypical chest pain", "non-exertional chest discomfort"),
}
_SYMPTOM_JA = {
    "exertional_chest_pain": ("労作時胸痛", "労作時の胸部圧迫感", "労作時胸部絞扼感"),
    "rest_angina": ("安静時胸痛", "安静時の胸部絞扼感"),
    "prolonged_chest_pain": ("遷延する安静時胸痛", "持続する安静時胸痛"),
    "dyspnoea": ("労作時息切れ", "労作時呼吸困難"),
    "atypical_chest_pain": ("非典型的な胸痛", "胸部違和感"),
}
_RISK_EN = {
    "hypertension": "hypertension",
    "dyslipidaemia": "dyslipidaemia",
    "diabetes": "type 2 diabetes",
    "smoking": "smoking",
    "ckd": "chronic kidney disease",
    "family_history": "family history of premature CAD",
}
_RISK_JA = {
    "hypertension": "高血圧",
    "dyslipidaemia": "脂質異常症",
    "diabetes": "2型糖尿病",
    "smoking": "喫煙歴",
    "ckd": "慢性腎臓病（CKD）",
    "family_history": "冠動脈疾患の家族歴",
}
_TERRITORY_EN = {"anterior": "anterior", "lateral": "lateral", "inferior": "inferior"}
_TERRITORY_JA = {"anterior": "前壁", "lateral": "側壁", "inferior": "下壁"}
_VESSEL_EN = {Vessel.RCA: "RCA", Vessel.LM: "LM", Vessel.LAD: "LAD", Vessel.LCX: "LCx"}
_VESSEL_JA = {Vessel.RCA: "RCA", Vessel.LM: "LMT", Vessel.LAD: "LAD", Vessel.LCX: "LCx"}
_COUNT_WORD_EN = {1: "single", 2: "two", 3: "three"}
_COUNT_WORD_JA = {1: "一", 2: "二", 3: "三"}

_INDICATION_EN = {
    "stable_angina": ("suspected stable angina", "suspected effort angina"),
    "unstable_angina": ("unstable angina",),
    "nstemi": ("NSTEMI", "non-ST-elevation myocardial infarction (NSTEMI)"),
    "silent_ischaemia": ("suspected silent myocardial ischaemia",),
    "pre_operative": ("pre-operative coronary assessment before non-cardiac surgery",),
    "lv_dysfunction": ("reduced LV systolic function (suspected ischaemic cardiomyopathy)",),
}
_INDICATION_JA = {
    "stable_angina": ("労作性狭心症疑い", "安定狭心症疑い"),
    "unstable_angina": ("不安定狭心症",),
    "nstemi": ("NSTEMI", "非ST上昇型心筋梗塞（NSTEMI）"),
    "silent_ischaemia": ("無症候性心筋虚血疑い",),
    "pre_operative": ("非心臓手術の術前評価", "術前冠動脈評価"),
    "lv_dysfunction": ("左室収縮能低下（虚血性心筋症疑い）", "虚血性心筋症疑い"),
}
_URGENT = ("unstable_angina", "nstemi")
# The working diagnosis once the angiogram has shown significant disease.
_DIAGNOSIS_EN = {
    "stable_angina": "stable angina pectoris",
    "unstable_angina": "unstable angina",
    "nstemi": "NSTEMI",
    "silent_ischaemia": "silent myocardial ischaemia",
    "pre_operative": "coronary artery disease found on pre-operative assessment",
    "lv_dysfunction": "ischaemic cardiomyopathy",
}
_DIAGNOSIS_JA = {
    "stable_angina": "労作性狭心症",
    "unstable_angina": "不安定狭心症",
    "nstemi": "NSTEMI",
    "silent_ischaemia": "無症候性心筋虚血",
    "pre_operative": "術前評価で判明した冠動脈疾患",
    "lv_dysfunction": "虚血性心筋症",
}


def _code[V](table: Mapping[str, V], code: str, what: str) -> V:
    try:
        return table[code]
    except KeyError:
        raise ValueError(f"unknown {what} code {code!r}") from None


def _join_en(items: Sequence[str]) -> str:
    items = list(items)
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


def _capitalise(text: str) -> str:
    return text[:1].upper() + text[1:]


def _sentences_ja(parts: Sequence[str]) -> str:
    return "".join(f"{part}。" for part in parts)


def _result_parts(result: str) -> dict[str, list[str]]:
    """ "ischaemia:anterior+lateral;infarct:inferior" -> {"ischaemia": [...], "infarct": [...]}."""
    parts: dict[str, list[str]] = {}
    for part in result.split(";"):
        key, _, values = part.partition(":")
        parts[key] = values.split("+") if values else []
    return parts


# -- pre-procedure report ---------------------------------------------------------------------


def _test_en(test: str, result: str, rng: np.random.Generator) -> str:
    parts = _result_parts(result)
    if test == "treadmill":
        return _pick(
            rng,
            {
                "positive": ("Treadmill exercise test positive for ischaemia", "Exercise ECG: ischaemic ST depression"),
                "equivocal": ("Treadmill exercise test equivocal", "Exercise ECG: non-diagnostic"),
                "negative": ("Treadmill exercise test negative", "Exercise ECG without ischaemic ST change"),
            }[result],
        )
    if test == "spect":
        if "normal" in parts:
            return _pick(rng, ("Stress myocardial perfusion SPECT: no ischaemia", "Stress SPECT normal"))
        if "equivocal" in parts:
            return "Stress myocardial perfusion SPECT equivocal (mild reduced uptake of uncertain significance)"
        findings = []
        if "ischaemia" in parts:
            walls = _join_en([_TERRITORY_EN[t] for t in parts["ischaemia"]])
            findings.append(f"reversible ischaemia in the {walls} wall{'s' if len(parts['ischaemia']) > 1 else ''}")
        if "infarct" in parts:
            walls = _join_en([_TERRITORY_EN[t] for t in parts["infarct"]])
            findings.append(f"a fixed {walls} defect consistent with infarction")
        prefix = _pick(
            rng, ("Stress myocardial perfusion SPECT shows ", "Stress SPECT: ", "Myocardial perfusion imaging: ")
        )
        return prefix + " and ".join(findings)
    if test == "ccta":
        if "normal" in parts:
            return "Coronary CT angiography: no significant stenosis"
        if "calcified" in parts:
            return _pick(
                rng,
                (
                    "Coronary CT angiography: heavy calcification, stenosis not assessable",
                    "CCTA non-diagnostic because of severe coronary calcification",
                ),
            )
        vessels = _join_en([_VESSEL_EN[Vessel(v)] for v in parts["stenosis"]])
        return _pick(
            rng,
            (
                f"Coronary CT angiography suggests significant stenosis in the {vessels}",
                f"CCTA: suspected obstructive disease of the {vessels}",
            ),
        )
    if test == "echo":
        lvef = parts["lvef"][0]
        wall = parts["wma"]
        if wall == ["none"]:
            motion = _pick(rng, ("no regional wall motion abnormality", "normal wall motion"))
        elif wall == ["diffuse"]:
            motion = "diffuse hypokinesis"
        else:
            motion = f"{_join_en([_TERRITORY_EN[t] for t in wall])} hypokinesis"
        return _pick(
            rng, (f"Echocardiography: LVEF {lvef}%, {motion}", f"Transthoracic echo shows LVEF {lvef}% with {motion}")
        )
    if test == "troponin":
        return _pick(
            rng,
            {
                "positive": ("High-sensitivity troponin elevated", "Troponin positive"),
                "negative": ("Troponin negative", "High-sensitivity troponin within normal limits"),
            }[result],
        )
    raise ValueError(f"unknown test code {test!r}")


def _test_ja(test: str, result: str, rng: np.random.Generator) -> str:
    parts = _result_parts(result)
    if test == "treadmill":
        return _pick(
            rng,
            {
                "positive": (
                    "トレッドミル運動負荷試験陽性",
                    "トレッドミル検査にて虚血性ST低下を認め陽性",
                    "運動負荷心電図陽性",
                ),
                "equivocal": ("トレッドミル運動負荷試験は判定保留", "運動負荷心電図は判定困難"),
                "negative": ("トレッドミル運動負荷試験陰性", "運動負荷心電図では虚血性ST変化なし"),
            }[result],
        )
    if test == "spect":
        if "normal" in parts:
            return _pick(rng, ("負荷心筋シンチでは明らかな虚血なし", "負荷心筋血流シンチは正常"))
        if "equivocal" in parts:
            return "負荷心筋シンチでは軽度の集積低下を認めるが判定困難"
        findings = []
        if "ischaemia" in parts:
            walls = "、".join(_TERRITORY_JA[t] for t in parts["ischaemia"])
            findings.append(_pick(rng, (f"{walls}の虚血", f"{walls}に再分布（虚血）")))
        if "infarct" in parts:
            walls = "、".join(_TERRITORY_JA[t] for t in parts["infarct"])
            findings.append(f"{walls}に固定性欠損（梗塞）")
        prefix = _pick(rng, ("心筋シンチにて", "負荷心筋シンチにて", "負荷心筋血流シンチで"))
        return prefix + "、".join(findings) + _pick(rng, ("", "を認める"))
    if test == "ccta":
        if "normal" in parts:
            return "冠動脈CTで有意狭窄なし"
        if "calcified" in parts:
            return _pick(rng, ("冠動脈CTでは高度石灰化のため狭窄評価困難", "冠動脈CT：石灰化が強く評価困難"))
        vessels = "、".join(_VESSEL_JA[Vessel(v)] for v in parts["stenosis"])
        return _pick(
            rng,
            (
                f"冠動脈CTにて{vessels}に有意狭窄疑い",
                f"冠動脈CTで{vessels}の高度狭窄が疑われる",
                f"CCTAにて{vessels}に狭窄病変を指摘",
            ),
        )
    if test == "echo":
        lvef = parts["lvef"][0]
        wall = parts["wma"]
        if wall == ["none"]:
            motion = _pick(rng, ("壁運動異常なし", "asynergyなし"))
        elif wall == ["diffuse"]:
            motion = "びまん性壁運動低下"
        else:
            motion = "、".join(_TERRITORY_JA[t] for t in wall) + "の壁運動低下"
        return _pick(
            rng,
            (
                f"心エコー：LVEF {lvef}%、{motion}",
                f"UCG：LVEF {lvef}%、{motion}",
                f"心エコーにてLVEF {lvef}%、{motion}",
            ),
        )
    if test == "troponin":
        return _pick(
            rng,
            {
                "positive": ("トロポニン陽性", "高感度トロポニンT上昇あり"),
                "negative": ("トロポニン陰性", "高感度トロポニンは陰性"),
            }[result],
        )
    raise ValueError(f"unknown test code {test!r}")


def _ordered_tests(profile: PatientProfile, rng: np.random.Generator) -> list[tuple[str, str]]:
    """Stress and anatomical tests in a random order; echo and troponin before or after them."""
    ischaemia = [test for test in profile.noninvasive_tests if test[0] in ("treadmill", "spect", "ccta")]
    other = [test for test in profile.noninvasive_tests if test[0] not in ("treadmill", "spect", "ccta")]
    ischaemia = [ischaemia[i] for i in rng.permutation(len(ischaemia))]
    return other + ischaemia if rng.random() < 0.4 else ischaemia + other


def _pre_procedure_en(profile: PatientProfile, rng: np.random.Generator) -> str:
    sex = _pick(rng, ({"M": "man", "F": "woman"}, {"M": "male", "F": "female"}))[profile.sex]
    symptomatic = [code for code in profile.symptoms if code != "none"]
    symptoms = _join_en([_pick(rng, _code(_SYMPTOM_EN, code, "symptom")) for code in symptomatic])
    risks = [_code(_RISK_EN, code, "risk factor") for code in profile.risk_factors]
    tests = [_test_en(test, result, rng) for test, result in _ordered_tests(profile, rng)]
    term = _pick(rng, _code(_INDICATION_EN, profile.indication, "indication"))
    urgent = profile.indication in _URGENT

    if rng.random() < 0.4:  # headed layout
        lines = [
            f"Patient: {profile.age}-year-old {sex}",
            f"Presenting symptoms: {symptoms}" if symptomatic else "Symptoms: none (asymptomatic)",
            f"Risk factors: {', '.join(risks)}" if risks else "Risk factors: none",
            "Non-invasive tests: " + "; ".join(tests),
            f"Indication: {'urgent ' if urgent else ''}coronary angiography for {term}",
        ]
        return "\n".join(lines)

    if symptomatic:
        opening = _pick(
            rng,
            (
                f"{profile.age}-year-old {sex} presenting with {symptoms}.",
                f"{profile.age}-year-old {sex} referred with {symptoms}.",
                f"{profile.age}-year-old {sex}. Chief complaint: {symptoms}.",
            ),
        )
    else:
        opening = _pick(
            rng,
            (f"{profile.age}-year-old {sex}, asymptomatic.", f"{profile.age}-year-old {sex} without anginal symptoms."),
        )
    if risks:
        risk_text = _join_en(risks)
        risk_sentence = _pick(
            rng,
            (f"Risk factors: {risk_text}.", f"Coronary risk factors include {risk_text}.", f"History of {risk_text}."),
        )
    else:
        risk_sentence = _pick(rng, ("No conventional coronary risk factors.", "Risk factors: none."))
    if urgent:
        indication = _pick(
            rng, (f"Early invasive coronary angiography is planned for {term}.", f"Urgent CAG for {term}.")
        )
    else:
        indication = _pick(
            rng,
            (
                f"Coronary angiography is planned for {term}.",
                f"Referred for diagnostic coronary angiography (CAG) for {term}.",
                f"Indication for CAG: {term}.",
            ),
        )
    body = [risk_sentence] + [test + "." for test in tests]
    if rng.random() < 0.3:  # tests before risk factors
        body = body[1:] + body[:1]
    return " ".join([opening, *body, indication])


def _pre_procedure_ja(profile: PatientProfile, rng: np.random.Generator) -> str:
    sex = {"M": "男性", "F": "女性"}[profile.sex]
    symptomatic = [code for code in profile.symptoms if code != "none"]
    symptoms = "、".join(_pick(rng, _code(_SYMPTOM_JA, code, "symptom")) for code in symptomatic)
    risks = "、".join(_code(_RISK_JA, code, "risk factor") for code in profile.risk_factors)
    tests = [_test_ja(test, result, rng) for test, result in _ordered_tests(profile, rng)]
    term = _pick(rng, _code(_INDICATION_JA, profile.indication, "indication"))
    if profile.indication in _URGENT:
        plan = _pick(rng, ("早期にCAGを施行する方針", "緊急CAGを施行する方針", "早期侵襲的戦略としてCAGを予定"))
    else:
        plan = _pick(rng, ("CAGを施行する方針", "待機的にCAGを予定", "CAGで精査する方針とした"))
    connector = _pick(rng, ("目的に", "として") if profile.indication == "pre_operative" else ("にて", "として"))

    layout = _pick(rng, ("prose", "headed", "soap"))
    if layout == "headed":
        lines = [
            f"【患者】{profile.age}歳 {sex}",
            f"【主訴】{symptoms or '自覚症状なし'}",
            f"【冠危険因子】{risks or 'なし'}",
            "【検査所見】" + _sentences_ja(tests),
            f"【方針】{term}{connector}{plan}。",
        ]
        return "\n".join(lines)
    if layout == "soap":
        objective = _sentences_ja(tests)
        lines = [
            f"S）{profile.age}歳{sex}。" + (f"{symptoms}を自覚。" if symptoms else "自覚症状なし。"),
            f"O）{'冠危険因子：' + risks + '。' if risks else '冠危険因子なし。'}{objective}",
            f"A）{term}",
            f"P）{plan}。",
        ]
        return "\n".join(lines)

    if symptoms:
        opening = _pick(
            rng,
            (
                f"{profile.age}歳{sex}。{symptoms}を主訴に当科受診。",
                f"{profile.age}歳{sex}。{symptoms}を主訴に紹介受診。",
                f"{profile.age}歳、{sex}。主訴：{symptoms}。",
            ),
        )
    else:
        opening = _pick(rng, (f"{profile.age}歳{sex}。自覚症状なし。", f"{profile.age}歳{sex}、無症状。"))
    if risks:
        risk_sentence = _pick(rng, (f"冠危険因子：{risks}。", f"既往に{risks}あり。", f"{risks}を有する。"))
    else:
        risk_sentence = _pick(rng, ("冠危険因子なし。", "特記すべき冠危険因子なし。"))
    body = [risk_sentence, _sentences_ja(tests)]
    if rng.random() < 0.3:
        body.reverse()
    return opening + "".join(body) + f"{term}{connector}{plan}。"


# -- diagnosis summary ------------------------------------------------------------------------


def _segment_name_en(segment: int) -> str:
    return AHA_SEGMENTS[segment][2]


def _lesion_en(lesion: Lesion, rng: np.random.Generator) -> str:
    """One lesion, segment before severity (see the module docstring)."""
    s, name = lesion.segment, _segment_name_en(lesion.segment)
    if lesion.significant:
        if lesion.occluded:
            text = _pick(
                rng,
                (
                    f"#{s} ({name}) total occlusion",
                    f"segment {s} ({name}): total occlusion",
                    f"{name} (#{s}): total occlusion",
                ),
            )
        else:
            text = _pick(
                rng,
                (
                    f"#{s} ({name}) {lesion.stenosis_pct}% stenosis",
                    f"segment {s} ({name}): {lesion.stenosis_pct}% stenosis",
                    f"{name} (#{s}) {lesion.stenosis_pct}%",
                ),
            )
    else:
        grade = "mild" if lesion.stenosis_pct <= 25 else "moderate"
        text = _pick(
            rng,
            (
                f"#{s} {lesion.stenosis_pct}% ({grade})",
                f"{grade} disease at segment {s} ({lesion.stenosis_pct}%)",
                f"segment {s}: {lesion.stenosis_pct}%, {grade}",
            ),
        )
    if lesion.culprit:
        text += _pick(rng, (" (culprit lesion)", ", the culprit lesion", " - culprit"))
    return text


def _lesion_ja(lesion: Lesion, rng: np.random.Generator, in_prose: bool) -> str:
    """One lesion, segment before severity; in prose with its vessel and a fuller culprit note."""
    s, pct = lesion.segment, lesion.stenosis_pct
    prefix = f"{_VESSEL_JA[lesion.vessel]} " if in_prose else ""
    if lesion.significant:
        if lesion.occluded:
            forms = [f"#{s} 完全閉塞", f"#{s} 100%（完全閉塞）"] + ([f"#{s}は完全閉塞"] if in_prose else [])
            text = _pick(rng, forms)
        elif pct >= 90:
            text = _pick(rng, (f"#{s} {pct}%", f"#{s} {pct}%狭窄", f"#{s}に{pct}%の高度狭窄"))
        else:
            text = _pick(rng, (f"#{s} {pct}%", f"#{s} {pct}%狭窄", f"#{s}に{pct}%狭窄"))
    else:
        grade = "軽度" if pct <= 25 else "中等度"
        text = _pick(rng, (f"#{s} {pct}%", f"#{s} {pct}%（{grade}狭窄）", f"#{s}に{pct}%の{grade}狭窄"))
    if lesion.culprit:
        text += _pick(rng, ("（責任病変）", "、責任病変と考えられる")) if in_prose else "（責任病変）"
    return prefix + text


def _vessel_count_en(findings: Findings, rng: np.random.Generator) -> str:
    vessels = findings.diseased_vessels
    n = len(vessels)
    names = ", ".join(_VESSEL_EN[v] for v in vessels)
    if findings.left_main_disease:
        if n == 0:
            return _pick(
                rng, ("Isolated left main disease", "Left main disease, other vessels without significant stenosis")
            )
        return _pick(
            rng,
            (
                f"Left main disease with {_COUNT_WORD_EN[n]}-vessel disease (LM + {n}VD)",
                f"Significant left main stenosis plus {n}VD ({names})",
            ),
        )
    if n == 0:
        return _pick(
            rng,
            (
                "No significant coronary artery stenosis",
                "No significant stenosis in the coronary arteries",
                "Angiographically no significant stenosis",
            ),
        )
    return _pick(
        rng,
        (
            f"{_capitalise(_COUNT_WORD_EN[n])}-vessel disease ({n}VD)",
            f"{n}VD ({names})",
            f"Significant {_COUNT_WORD_EN[n]}-vessel coronary artery disease ({n}VD: {names})",
        ),
    )


def _vessel_count_ja(findings: Findings, rng: np.random.Generator) -> str:
    vessels = findings.diseased_vessels
    n = len(vessels)
    names = "、".join(_VESSEL_JA[v] for v in vessels)
    if findings.left_main_disease:
        if n == 0:
            return _pick(rng, ("LMT単独病変", "LMT病変（単独）"))
        return _pick(rng, (f"LMT病変＋{n}VD", f"LMT病変を伴う{n}枝病変（{n}VD）", f"LMT＋{n}VD（{names}）"))
    if n == 0:
        return _pick(rng, ("冠動脈に有意狭窄なし", "有意狭窄なし", "3枝とも有意狭窄なし"))
    return _pick(rng, (f"{n}枝病変（{n}VD）", f"{_COUNT_WORD_JA[n]}枝病変（{n}VD）", f"{n}VD（{names}）"))


_DOMINANCE_EN = {
    "right": ("Right dominant.", "Right-dominant coronary circulation.", "Dominance: right."),
    "left": ("Left dominant.", "Left-dominant coronary circulation.", "Dominance: left."),
    "co-dominant": ("Co-dominant circulation.", "Balanced (co-dominant) system.", "Dominance: co-dominant."),
}
_DOMINANCE_JA = {
    "right": ("右冠動脈優位", "右優位型", "RCA優位"),
    "left": ("左冠動脈優位", "左優位型", "LCx優位"),
    "co-dominant": ("バランス型", "右左均衡型（co-dominant）"),
}


def _lesion_order(findings: Findings, rng: np.random.Generator) -> list[Lesion]:
    lesions = list(findings.lesions)
    if rng.random() < 0.5:
        return sorted(lesions, key=lambda lesion: lesion.segment)
    # The worst first, as a reader reports what matters most.
    return sorted(lesions, key=lambda lesion: (not lesion.culprit, not lesion.significant, -lesion.stenosis_pct))


def _diagnosis_en(profile: PatientProfile, findings: Findings, choices: _ExamChoices, rng: np.random.Generator) -> str:
    dominance = _pick(rng, _DOMINANCE_EN[findings.dominance.value])
    count = _vessel_count_en(findings, rng)
    if choices.clinical_diagnosis:
        count = f"{count}; clinical diagnosis: {_DIAGNOSIS_EN.get(profile.indication, 'coronary artery disease')}"
    layout = _pick(rng, ("by_vessel", "prose", "impression_first"))

    if layout == "by_vessel":
        order = _pick(rng, ((Vessel.LM, Vessel.LAD, Vessel.LCX, Vessel.RCA), _VESSEL_ORDER))
        lines = [dominance]
        for vessel in order:
            lesions = sorted((x for x in findings.lesions if x.vessel is vessel), key=lambda x: x.segment)
            if lesions:
                lines.append(f"{_VESSEL_EN[vessel]}: " + "; ".join(_lesion_en(x, rng) for x in lesions) + ".")
            else:
                lines.append(
                    f"{_VESSEL_EN[vessel]}: {_pick(rng, ('normal', 'no significant disease', 'no stenosis'))}."
                )
        lines.append(f"{count}.")
        return "\n".join(lines)

    ordered = _lesion_order(findings, rng)
    major = [x for x in ordered if x.significant or x.culprit]
    minor = [x for x in ordered if not (x.significant or x.culprit)]
    lesion_sentences = [_capitalise(_lesion_en(x, rng)) + "." for x in major]
    if minor:
        if major:
            prefix = _pick(rng, ("Non-significant disease: ", "Other lesions: ", "Also "))
        else:
            prefix = _pick(rng, ("Non-significant disease: ", "Minor disease only: ", ""))
        lesion_sentences.append(_capitalise(prefix + ", ".join(_lesion_en(x, rng) for x in minor)) + ".")
    if layout == "prose":
        return " ".join([dominance, *lesion_sentences, f"{count}."])
    return "\n".join([f"Impression: {count}.", *lesion_sentences, dominance])


def _diagnosis_ja(profile: PatientProfile, findings: Findings, choices: _ExamChoices, rng: np.random.Generator) -> str:
    dominance = _pick(rng, _DOMINANCE_JA[findings.dominance.value])
    count = _vessel_count_ja(findings, rng)
    if choices.clinical_diagnosis:
        count = f"{_DIAGNOSIS_JA.get(profile.indication, '冠動脈疾患')}、{count}"
    layout = _pick(rng, ("by_vessel", "prose", "headed"))

    if layout == "by_vessel":
        # Japanese charts list the vessels RCA, LMT, LAD, LCx, or the left system first.
        order = _pick(rng, (_VESSEL_ORDER, (Vessel.LM, Vessel.LAD, Vessel.LCX, Vessel.RCA)))
        lines = []
        for vessel in order:
            lesions = sorted((x for x in findings.lesions if x.vessel is vessel), key=lambda x: x.segment)
            if lesions:
                lines.append(f"{_VESSEL_JA[vessel]}：" + "、".join(_lesion_ja(x, rng, in_prose=False) for x in lesions))
            else:
                lines.append(f"{_VESSEL_JA[vessel]}：{_pick(rng, ('n.p.', '有意狭窄なし', '異常なし'))}")
        summary = f"{dominance}。{count}。"
        return "\n".join([summary, *lines] if rng.random() < 0.5 else [*lines, summary])

    ordered = _lesion_order(findings, rng)
    major = [x for x in ordered if x.significant or x.culprit]
    minor = [x for x in ordered if not (x.significant or x.culprit)]
    sentences = []
    for lesion in major:
        text = _lesion_ja(lesion, rng, in_prose=True)
        if text.endswith("狭窄") and rng.random() < 0.5:
            text += "を認める"
        sentences.append(text + "。")
    if minor:
        prefix = _pick(rng, ("その他、", "他に", "")) if major else ""
        sentences.append(prefix + "、".join(_lesion_ja(x, rng, in_prose=False) for x in minor) + "。")
    if layout == "prose":
        closing = _pick(rng, (f"以上より{count}。", f"{count}。", f"診断：{count}。"))
        return f"{dominance}。" + "".join(sentences) + closing
    return f"【診断】{count}\n【所見】{dominance}。" + "".join(sentences)


# -- treatment plan ---------------------------------------------------------------------------


@dataclass(frozen=True)
class _ExamChoices:
    """What the texts state beyond the records (drugs, devices, staging, follow-up items),
    chosen once per exam so that the Japanese and English documents say the same things;
    only the wording and order are chosen per language."""

    clinical_diagnosis: bool  # the summary names the working diagnosis next to the vessel count
    pci_targets: tuple[int, ...]  # decision's targets, the culprit first
    pci_strategy: str  # "one_session" | "staged" | "culprit_first"
    ivus: bool
    p2y12: str  # "prasugrel" | "clopidogrel" | "unspecified"
    strong_statin: bool
    rehabilitation: bool
    full_workup: bool  # before CABG: carotid ultrasound and pulmonary function, or carotid only
    outpatient: bool


def _choose(findings: Findings, decision: TreatmentDecision, rng: np.random.Generator) -> _ExamChoices:
    targets = list(decision.target_segments)
    culprit_leads = False
    if findings.culprit is not None and findings.culprit.segment in targets and len(targets) > 1:
        culprit_leads = True
        targets.remove(findings.culprit.segment)
        targets.insert(0, findings.culprit.segment)
    strategies = ["one_session", "staged"] + (["culprit_first"] if culprit_leads else [])
    return _ExamChoices(
        clinical_diagnosis=bool(findings.significant_lesions) and rng.random() < 0.5,
        pci_targets=tuple(targets),
        pci_strategy=_pick(rng, strategies) if len(targets) > 1 else "one_session",
        ivus=rng.random() < 0.4,
        p2y12=_pick(rng, ("prasugrel", "clopidogrel", "unspecified"), p=(0.5, 0.3, 0.2)),
        strong_statin=rng.random() < 0.6,
        rehabilitation=rng.random() < 0.5,
        full_workup=rng.random() < 0.5,
        outpatient=rng.random() < 0.5,
    )


_RISK_MANAGEMENT_EN = {
    "hypertension": "blood pressure control",
    "dyslipidaemia": "lipid lowering",
    "diabetes": "glycaemic control",
    "smoking": "smoking cessation",
}
_RISK_MANAGEMENT_JA = {
    "hypertension": "降圧",
    "dyslipidaemia": "脂質管理",
    "diabetes": "血糖コントロール",
    "smoking": "禁煙指導",
}


def _risk_management_en(profile: PatientProfile, rng: np.random.Generator) -> str:
    chosen = [_RISK_MANAGEMENT_EN[code] for code in profile.risk_factors if code in _RISK_MANAGEMENT_EN]
    if not chosen:
        return _pick(rng, ("Lifestyle advice and risk factor surveillance.", "Continue lifestyle modification."))
    return _pick(rng, (f"Risk factor management: {', '.join(chosen)}.", f"Intensify {_join_en(chosen)}."))


def _risk_management_ja(profile: PatientProfile, rng: np.random.Generator) -> str:
    chosen = "、".join(_RISK_MANAGEMENT_JA[code] for code in profile.risk_factors if code in _RISK_MANAGEMENT_JA)
    if not chosen:
        return _pick(rng, ("生活習慣指導を継続。", "生活習慣の改善を指導。"))
    return _pick(rng, (f"冠危険因子の管理（{chosen}）を徹底。", f"{chosen}を継続して行う。"))


def _cabg_reason(findings: Findings, decision: TreatmentDecision) -> str:
    """ "left_main" or "3vd": the reason the decision gives, or else the one the findings show."""
    if decision.reason == "left main disease":
        return "left_main"
    if decision.reason == "three-vessel disease":
        return "3vd"
    return "left_main" if findings.left_main_disease else "3vd"


def _plan_en(
    profile: PatientProfile,
    findings: Findings,
    decision: TreatmentDecision,
    choices: _ExamChoices,
    rng: np.random.Generator,
) -> str:
    follow_up: list[str] = []
    if decision.treatment is Treatment.PCI:
        targets = choices.pci_targets
        pci = "IVUS-guided PCI" if choices.ivus else "PCI"
        listed = _join_en([f"#{s}" for s in targets])
        if len(targets) == 1:
            s = targets[0]
            head = _pick(
                rng,
                (
                    f"{pci} with DES implantation to #{s} is planned.",
                    f"Plan: {pci} of the {_segment_name_en(s)} (#{s}) with a drug-eluting stent.",
                    f"Proceed to {pci} of #{s} (DES).",
                ),
            )
        elif choices.pci_strategy == "culprit_first":
            rest = _join_en([f"#{s}" for s in targets[1:]])
            head = _pick(
                rng,
                (
                    f"Plan: {pci} (DES) of the culprit lesion #{targets[0]} first, then staged PCI of {rest}.",
                    f"{pci} with DES to the culprit #{targets[0]}; {rest} to be treated by staged PCI.",
                ),
            )
        elif choices.pci_strategy == "staged":
            head = _pick(rng, (f"Plan: staged {pci} of {listed} (DES).", f"Staged {pci} with DES to {listed}."))
        else:
            head = _pick(
                rng, (f"{pci} with DES to {listed} is planned.", f"Plan: {pci} of {listed} in one session (DES).")
            )
        follow_up.append(
            {
                "prasugrel": _pick(
                    rng,
                    ("DAPT (aspirin + prasugrel) after PCI.", "Dual antiplatelet therapy with aspirin and prasugrel."),
                ),
                "clopidogrel": _pick(
                    rng,
                    (
                        "DAPT (aspirin + clopidogrel) after PCI.",
                        "Dual antiplatelet therapy with aspirin and clopidogrel.",
                    ),
                ),
                "unspecified": _pick(rng, ("Start DAPT (aspirin plus a P2Y12 inhibitor).", "DAPT after PCI.")),
            }[choices.p2y12]
        )
        follow_up.append(
            _pick(
                rng,
                (
                    "High-intensity statin, LDL-C target < 70 mg/dL.",
                    "High-intensity statin with an LDL-C goal below 70 mg/dL.",
                ),
            )
            if choices.strong_statin
            else _pick(rng, ("Statin, LDL-C target < 70 mg/dL.", "Statin with an LDL-C goal below 70 mg/dL."))
        )
        if "ckd" in profile.risk_factors:
            follow_up.append("Peri-procedural hydration to prevent contrast-induced nephropathy.")
        if profile.indication == "pre_operative":
            follow_up.append("Timing of the planned surgery to be agreed with the surgeons in view of DAPT.")
        if choices.rehabilitation:
            follow_up.append(_pick(rng, ("Cardiac rehabilitation after PCI.", "Refer to cardiac rehabilitation.")))
    elif decision.treatment is Treatment.CABG_HEART_TEAM:
        if _cabg_reason(findings, decision) == "left_main":
            reason = "left main disease"
            if len(findings.diseased_vessels) == 3:
                reason += " with three-vessel disease (3VD)"
        else:
            reason = "three-vessel disease (3VD)"
        head = _pick(
            rng,
            (
                f"Given {reason}, the case will be discussed at the heart team conference with a view to CABG.",
                f"{_capitalise(reason)}: heart-team discussion (cardiology and cardiac surgery) regarding CABG.",
                f"Plan: referral to cardiac surgery for CABG after heart team review, in view of {reason}.",
            ),
        )
        listed = ", ".join(f"#{s}" for s in decision.target_segments)
        follow_up.append(_pick(rng, (f"Significant lesions: {listed}.", f"Revascularisation targets: {listed}.")))
        follow_up.append(
            _pick(rng, ("SYNTAX score to be calculated.", "Calculate the SYNTAX score for the conference."))
        )
        if choices.full_workup:
            follow_up.append("Pre-operative work-up: carotid ultrasound and pulmonary function tests.")
        else:
            follow_up.append("Carotid ultrasound before surgery.")
        follow_up.append(_pick(rng, ("Continue aspirin and statin.", "Aspirin and statin continued.")))
    else:
        head = _pick(
            rng,
            (
                "No significant stenosis; continue optimal medical therapy (OMT).",
                "No revascularisation indicated. Optimal medical therapy (OMT) with risk factor management.",
                "Plan: optimal medical therapy and risk factor modification.",
            ),
        )
        moderate = [x for x in findings.lesions if x.stenosis_pct == 50 and not x.significant]
        if moderate:
            listed = _join_en([f"#{x.segment}" for x in moderate])
            follow_up.append(f"Moderate disease at {listed} to be followed clinically.")
        if profile.indication == "pre_operative":
            follow_up.append(
                _pick(
                    rng,
                    (
                        "No coronary contraindication to the planned surgery.",
                        "Cleared for the planned surgery from a coronary standpoint.",
                    ),
                )
            )
    follow_up.append(_risk_management_en(profile, rng))
    if findings.lvef_pct < 40:
        follow_up.append("Guideline-directed therapy for reduced LVEF (beta-blocker, ARNI, MRA, SGLT2 inhibitor).")
    follow_up = [follow_up[i] for i in rng.permutation(len(follow_up))]
    if choices.outpatient:
        follow_up.append(_pick(rng, ("Outpatient follow-up.", "Follow-up in the outpatient clinic.")))
    return head + ("\n" if rng.random() < 0.4 else " ") + " ".join(follow_up)


def _plan_ja(
    profile: PatientProfile,
    findings: Findings,
    decision: TreatmentDecision,
    choices: _ExamChoices,
    rng: np.random.Generator,
) -> str:
    follow_up: list[str] = []
    if decision.treatment is Treatment.PCI:
        targets = choices.pci_targets
        guide = "IVUSガイド下に" if choices.ivus else ""
        listed = "、".join(f"#{s}" for s in targets)
        if len(targets) == 1:
            s = targets[0]
            head = _pick(
                rng,
                (
                    f"#{s}に対し{guide}PCI（DES留置）を予定。",
                    f"{_VESSEL_JA[AHA_SEGMENTS[s][0]]} #{s}に対して{guide}PCIを施行する方針（DES留置）。",
                    f"#{s}の病変に対し{guide}PCI（DES）を施行予定。",
                ),
            )
        elif choices.pci_strategy == "culprit_first":
            rest = "、".join(f"#{s}" for s in targets[1:])
            head = _pick(
                rng,
                (
                    f"責任病変である#{targets[0]}に対し{guide}PCI（DES留置）を先行し、"
                    f"{rest}に対しては後日staged PCIを予定。",
                    f"まず責任病変の#{targets[0]}に{guide}PCI（DES）を施行し、{rest}はstaged PCIの方針。",
                ),
            )
        elif choices.pci_strategy == "staged":
            head = _pick(
                rng,
                (
                    f"{listed}に対して{guide}段階的PCI（staged PCI、DES留置）を予定。",
                    f"{listed}に対し{guide}staged PCI（DES）を施行する方針。",
                ),
            )
        else:
            head = _pick(
                rng,
                (
                    f"{listed}に対し{guide}PCI（DES留置）を予定。",
                    f"{listed}に対して一期的に{guide}PCI（DES）を施行する方針。",
                ),
            )
        follow_up.append(
            {
                "prasugrel": _pick(
                    rng,
                    ("DAPT（アスピリン＋プラスグレル）を開始。", "PCI後はアスピリン＋プラスグレルによるDAPTを継続。"),
                ),
                "clopidogrel": _pick(
                    rng,
                    (
                        "DAPT（アスピリン＋クロピドグレル）を開始。",
                        "PCI後はアスピリン＋クロピドグレルによるDAPTを継続。",
                    ),
                ),
                "unspecified": _pick(rng, ("DAPTを開始。", "PCI後はDAPTを継続。")),
            }[choices.p2y12]
        )
        follow_up.append(
            _pick(
                rng,
                (
                    "ストロングスタチンを導入し、LDL-C 70 mg/dL未満を目標とする。",
                    "ストロングスタチン（LDL-C<70 mg/dL目標）。",
                ),
            )
            if choices.strong_statin
            else _pick(
                rng, ("スタチンを導入し、LDL-C 70 mg/dL未満を目標とする。", "スタチン投与（LDL-C<70 mg/dL目標）。")
            )
        )
        if "ckd" in profile.risk_factors:
            follow_up.append("CKDあり、造影剤腎症予防のため補液を行う。")
        if profile.indication == "pre_operative":
            follow_up.append("予定手術の時期は抗血小板療法を考慮し外科と調整する。")
        if choices.rehabilitation:
            follow_up.append(_pick(rng, ("心臓リハビリテーションを導入。", "PCI後は心臓リハビリテーションを行う。")))
    elif decision.treatment is Treatment.CABG_HEART_TEAM:
        if _cabg_reason(findings, decision) == "left_main":
            reason = "LMT病変＋3VD" if len(findings.diseased_vessels) == 3 else "LMT病変"
        else:
            reason = _pick(rng, ("3枝病変（3VD）", "3VD"))
        head = _pick(
            rng,
            (
                f"{reason}のため、ハートチームカンファレンスにてCABGを検討。",
                f"{reason}であり、心臓血管外科と協議の上（ハートチーム）CABGを検討する方針。",
                f"{reason}。ハートチームでの協議を経てCABGの方針とする予定。",
            ),
        )
        listed = "、".join(f"#{s}" for s in decision.target_segments)
        follow_up.append(_pick(rng, (f"有意病変：{listed}。", f"血行再建の対象病変：{listed}。")))
        follow_up.append(_pick(rng, ("SYNTAXスコアを算出。", "カンファレンスに向けSYNTAXスコアを算出する。")))
        if choices.full_workup:
            follow_up.append("術前評価として頸動脈エコー、呼吸機能検査を施行。")
        else:
            follow_up.append("術前に頸動脈エコーを施行。")
        follow_up.append(_pick(rng, ("アスピリン、スタチンは継続。", "抗血小板薬（アスピリン）とスタチンを継続。")))
    else:
        head = _pick(
            rng,
            (
                "有意狭窄なく、至適薬物療法（OMT）を継続。",
                "血行再建の適応なし。至適薬物療法（OMT）を継続する。",
                "至適薬物療法（OMT）にて経過観察の方針。",
            ),
        )
        moderate = [x for x in findings.lesions if x.stenosis_pct == 50 and not x.significant]
        if moderate:
            listed = "、".join(f"#{x.segment}" for x in moderate)
            follow_up.append(f"{listed}の中等度狭窄は外来で経過観察。")
        if profile.indication == "pre_operative":
            follow_up.append(_pick(rng, ("冠動脈疾患の観点からは予定手術は施行可能と判断。", "予定手術は施行可能。")))
    follow_up.append(_risk_management_ja(profile, rng))
    if findings.lvef_pct < 40:
        follow_up.append("LVEF低下に対しβ遮断薬、ARNI、MRA、SGLT2阻害薬の導入を検討。")
    follow_up = [follow_up[i] for i in rng.permutation(len(follow_up))]
    if choices.outpatient:
        follow_up.append(_pick(rng, ("外来にて経過観察。", "外来フォロー。")))
    if rng.random() < 0.4:
        return "【方針】" + head + "\n" + "\n".join(f"・{item}" for item in follow_up)
    return head + "".join(follow_up)


def write_reports(
    profile: PatientProfile, findings: Findings, decision: TreatmentDecision, rng: np.random.Generator
) -> dict[tuple[str, str], str]:
    """The six documents of a phantom exam, keyed (kind, language), kinds as in
    ``annotation.models.DocumentKind`` and languages "ja" and "en". Both languages state the
    same facts in their own wording; the plan follows ``decision`` as given; the diagnosis
    summaries mention every lesion in the format of the module docstring."""
    choices = _choose(findings, decision, rng)
    return {
        (PRE_PROCEDURE_REPORT, "ja"): _pre_procedure_ja(profile, rng),
        (PRE_PROCEDURE_REPORT, "en"): _pre_procedure_en(profile, rng),
        (DIAGNOSIS_SUMMARY, "ja"): _diagnosis_ja(profile, findings, choices, rng),
        (DIAGNOSIS_SUMMARY, "en"): _diagnosis_en(profile, findings, choices, rng),
        (TREATMENT_PLAN, "ja"): _plan_ja(profile, findings, decision, choices, rng),
        (TREATMENT_PLAN, "en"): _plan_en(profile, findings, decision, choices, rng),
    }
