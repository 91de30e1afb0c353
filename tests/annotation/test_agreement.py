"""Agreement statistics, checked against small examples computed by hand and, independently,
with the same libraries called directly."""

from __future__ import annotations

import krippendorff
import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score
from statsmodels.stats.inter_rater import fleiss_kappa

from annotation.agreement import agreement_report, confusion_matrix_between, confusion_matrix_png
from annotation.labels import withdraw_label
from tests.annotation.labelling import label, physicians, sampled_frames
from tests.factories import CineLoopFactory

pytestmark = pytest.mark.django_db


def frames(count: int, loop=None):
    """``count`` sampled frames (every fifth frame of a loop is sampled)."""
    loop = loop or CineLoopFactory(frame_count=count * 5)
    return sampled_frames(loop)


def test_identical_labels_agree_perfectly(physician, other_physician):
    classes = ["LCA_better", "RCA_bad", "LCA_other", "RCA_better"]
    for frame, six_class in zip(frames(4), classes, strict=True):
        label(frame, physician, six_class)
        label(frame, other_physician, six_class)

    report = agreement_report()

    assert report["physicians"] == ["dr_other_physician", "dr_physician"]
    assert (report["frames"], report["labels"]) == (4, 8)
    for dimension in ("laterality", "category", "class"):
        stats = report["dimensions"][dimension]
        [pair] = stats["cohen_kappa"]
        assert pair["kappa"] == pytest.approx(1.0)
        assert pair["observed_agreement"] == pytest.approx(1.0)
        assert pair["frames"] == 4
        assert stats["fleiss_kappa"]["kappa"] == pytest.approx(1.0)
        assert stats["krippendorff_alpha"]["alpha"] == pytest.approx(1.0)


def test_a_hand_computed_example(physician, other_physician):
    # Laterality: A says L L R R, B says L R R R. Observed agreement 3/4; chance agreement
    # 1/2 * 1/4 + 1/2 * 3/4 = 1/2; Cohen's kappa = (3/4 - 1/2) / (1 - 1/2) = 1/2.
    a = ["LCA_better", "LCA_better", "RCA_better", "RCA_bad"]
    b = ["LCA_better", "RCA_better", "RCA_better", "RCA_bad"]
    for frame, first, second in zip(frames(4), a, b, strict=True):
        label(frame, physician, first)
        label(frame, other_physician, second)

    laterality = agreement_report()["dimensions"]["laterality"]

    [pair] = laterality["cohen_kappa"]
    assert pair["kappa"] == pytest.approx(0.5)
    assert pair["kappa"] == pytest.approx(cohen_kappa_score(list("LLRR"), list("LRRR")))
    assert pair["observed_agreement"] == pytest.approx(0.75)
    # Fleiss: per frame counts of (LCA, RCA).
    expected_fleiss = fleiss_kappa(np.array([[2, 0], [1, 1], [0, 2], [0, 2]]))
    assert laterality["fleiss_kappa"]["kappa"] == pytest.approx(expected_fleiss)
    assert laterality["fleiss_kappa"]["frames"] == 4
    expected_alpha = krippendorff.alpha(
        reliability_data=np.array([[0, 0, 1, 1], [0, 1, 1, 1]], dtype=float), level_of_measurement="nominal"
    )
    assert laterality["krippendorff_alpha"]["alpha"] == pytest.approx(expected_alpha)
    # The category alone agrees everywhere.
    assert agreement_report()["dimensions"]["category"]["cohen_kappa"][0]["kappa"] == pytest.approx(1.0)


def test_three_readers_with_a_missing_label(physician, other_physician):
    third = physicians(1, prefix="dr_third")[0]
    first, second, third_frame = frames(3)
    for frame, values in [
        (first, ("LCA_better", "LCA_better", "LCA_better")),
        (second, ("RCA_bad", "RCA_bad", "RCA_other")),
        (third_frame, ("LCA_other", "LCA_other", None)),
    ]:
        for reader, six_class in zip((physician, other_physician, third), values, strict=True):
            if six_class:
                label(frame, reader, six_class)

    stats = agreement_report()["dimensions"]["class"]

    # Fleiss' kappa over the two frames with three labels each.
    assert stats["fleiss_kappa"]["frames"] == 2
    assert stats["fleiss_kappa"]["raters_per_frame"] == 3
    codes = {"LCA_better": 0, "RCA_bad": 1, "RCA_other": 2, "LCA_other": 3}
    expected_fleiss = fleiss_kappa(np.array([[3, 0, 0, 0], [0, 2, 1, 0]]))
    assert stats["fleiss_kappa"]["kappa"] == pytest.approx(expected_fleiss)
    # Krippendorff's alpha over all three frames, the missing label left out.
    data = np.array(
        [
            [codes["LCA_better"], codes["RCA_bad"], codes["LCA_other"]],
            [codes["LCA_better"], codes["RCA_bad"], codes["LCA_other"]],
            [codes["LCA_better"], codes["RCA_other"], np.nan],
        ]
    )
    expected_alpha = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert stats["krippendorff_alpha"]["alpha"] == pytest.approx(expected_alpha)
    assert stats["krippendorff_alpha"]["frames"] == 3
    assert len(stats["cohen_kappa"]) == 3  # every pair shares at least two frames


def test_statistics_per_exam_and_withdrawn_labels_left_out(physician, other_physician):
    agreeing = frames(2)
    disagreeing = frames(2)
    for frame, six_class in zip(agreeing, ["LCA_better", "RCA_bad"], strict=True):
        label(frame, physician, six_class)
        label(frame, other_physician, six_class)
    for frame, (mine, theirs) in zip(disagreeing, [("LCA_better", "RCA_bad"), ("RCA_bad", "LCA_better")], strict=True):
        label(frame, physician, mine)
        label(frame, other_physician, theirs)

    per_exam = {row["exam"]: row for row in agreement_report()["per_exam"]}
    agreeing_exam = str(agreeing[0].loop.exam.uuid)
    disagreeing_exam = str(disagreeing[0].loop.exam.uuid)
    assert per_exam[agreeing_exam]["dimensions"]["class"]["krippendorff_alpha"]["alpha"] == pytest.approx(1.0)
    assert per_exam[disagreeing_exam]["dimensions"]["class"]["cohen_kappa"][0]["kappa"] < 0

    for frame in disagreeing:
        withdraw_label(frame, other_physician, expected_version=1)
    report = agreement_report()
    assert report["labels"] == 6
    assert report["dimensions"]["class"]["cohen_kappa"][0]["kappa"] == pytest.approx(1.0)
    assert agreement_report(agreeing[0].loop.exam)["labels"] == 4


def test_undefined_statistics_are_none_not_nan(physician, other_physician):
    for frame in frames(2):
        label(frame, physician, "LCA_better")
        label(frame, other_physician, "LCA_better")

    stats = agreement_report()["dimensions"]["laterality"]

    # One class only: chance agreement is total and kappa is 0/0.
    assert stats["cohen_kappa"][0]["kappa"] is None
    assert stats["cohen_kappa"][0]["observed_agreement"] == 1.0
    assert stats["fleiss_kappa"]["kappa"] is None
    assert stats["krippendorff_alpha"]["alpha"] is None


def test_no_labels_at_all():
    report = agreement_report()

    assert report["labels"] == 0
    assert report["per_exam"] == []
    stats = report["dimensions"]["class"]
    assert stats["cohen_kappa"] == []
    assert stats["fleiss_kappa"] == {"kappa": None, "frames": 0, "raters_per_frame": None}
    assert stats["krippendorff_alpha"] == {"alpha": None, "frames": 0}


def test_confusion_matrix_and_its_plot(physician, other_physician):
    a = ["LCA_better", "LCA_better", "RCA_bad"]
    b = ["LCA_better", "LCA_bad", "RCA_bad"]
    for frame, first, second in zip(frames(3), a, b, strict=True):
        label(frame, physician, first)
        label(frame, other_physician, second)

    values, matrix = confusion_matrix_between("dr_physician", "dr_other_physician", "class")

    assert values[:2] == ["LCA_better", "LCA_bad"]
    assert matrix[0, 0] == 1  # both LCA_better
    assert matrix[0, 1] == 1  # A LCA_better, B LCA_bad
    assert matrix[values.index("RCA_bad"), values.index("RCA_bad")] == 1
    assert matrix.sum() == 3
    png = confusion_matrix_png("dr_physician", "dr_other_physician", "category")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    empty = confusion_matrix_png("dr_physician", "nobody", "laterality")
    assert empty.startswith(b"\x89PNG")
