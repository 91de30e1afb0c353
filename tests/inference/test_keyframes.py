"""Key-frame picking (threshold, gap, caps, laterality), re-extraction that keeps the
physicians' decisions, and the overrides that never delete a row."""

from __future__ import annotations

import numpy as np
import pytest
from django.utils import timezone

from annotation.models import SIX_CLASSES, FinalLabel, FinalLabelMethod, Frame, PreLabel
from inference.keyframes import (
    KeyFrameError,
    LoopPredictions,
    add_key_frame,
    key_frames_for,
    loop_laterality,
    pick_in_loop,
    pick_key_frames,
    remove_key_frame,
    select_key_frames,
)
from inference.models import KeyFrame, KeyFrameOrigin, KeyFrameOverride, OverrideAction
from inference.parameters import KeyFrameSelection
from tests.factories import CineLoopFactory, ExamFactory, ModelVersionFactory, make_prelabel

LCA_BETTER = SIX_CLASSES.index("LCA_better")
RCA_BETTER = SIX_CLASSES.index("RCA_better")


def probabilities_with(better: list[float], side: str = "LCA") -> np.ndarray:
    """(N, 6) rows whose "<side>_better" is ``better[i]`` and the rest sits on the same side."""
    rows = np.zeros((len(better), 6))
    column = LCA_BETTER if side == "LCA" else RCA_BETTER
    other = SIX_CLASSES.index(f"{side}_other")
    for row, p in zip(rows, better, strict=True):
        row[column] = p
        row[other] = 1.0 - p
    return rows


def selection(**overrides: object) -> KeyFrameSelection:
    values = {"threshold": 0.5, "min_gap_frames": 5, "max_per_loop": 2, "max_per_exam_laterality": 3}
    return KeyFrameSelection(**{**values, **overrides})


# --- the pure picking ------------------------------------------------------------------------


def test_only_frames_at_or_above_the_threshold_are_picked():
    scores = np.array([0.1, 0.49, 0.5, 0.2, 0.3, 0.4, 0.45, 0.1, 0.9])
    picked = pick_in_loop(np.arange(len(scores)), scores, selection(max_per_loop=5, min_gap_frames=1))
    assert picked == [8, 2]  # best first; 0.49 misses the threshold by a hair


def test_picks_are_at_least_the_gap_apart_greedy_by_score():
    scores = np.array([0.0, 0.6, 0.7, 0.95, 0.9, 0.0, 0.0, 0.8, 0.85, 0.0])
    picked = pick_in_loop(np.arange(10), scores, selection(max_per_loop=3, min_gap_frames=4))
    # 3 (0.95) first; 4, 2, 1 are within 4 frames of it; 8 (0.85) is 5 away; 7 is 1 from 8.
    assert picked == [3, 8]


def test_gap_counts_frame_numbers_not_positions():
    # Sampled-frame pre-labels: positions 0 and 1 are frames 0 and 10.
    picked = pick_in_loop(np.array([0, 10, 12]), np.array([0.9, 0.8, 0.85]), selection(min_gap_frames=5))
    assert picked == [0, 2]


def test_at_most_max_per_loop():
    scores = np.array([0.9, 0, 0, 0, 0, 0.8, 0, 0, 0, 0, 0.7])
    assert pick_in_loop(np.arange(11), scores, selection(max_per_loop=2)) == [0, 5]
    assert pick_in_loop(np.arange(11), scores, selection(max_per_loop=1)) == [0]


def test_ties_take_the_earlier_frame():
    assert pick_in_loop(np.arange(3), np.array([0.8, 0.8, 0.8]), selection(max_per_loop=1)) == [0]


def test_loop_laterality_is_the_side_with_more_summed_probability():
    # One confident RCA frame against two weakly LCA frames: summed, LCA 1.2 > RCA 0.8 + ...
    rows = np.vstack([probabilities_with([0.6, 0.6], "LCA"), probabilities_with([0.95], "RCA")])
    assert loop_laterality(rows) == "LCA"
    assert loop_laterality(probabilities_with([0.9, 0.1, 0.3], "RCA")) == "RCA"


def test_frames_score_by_the_better_class_of_the_loops_side():
    # A right coronary loop with one frame that looks like a good LCA frame: it scores by
    # RCA_better (0.0), not LCA_better.
    rows = probabilities_with([0.2, 0.9, 0.3, 0.95], "RCA")
    stray = np.zeros(6)
    stray[LCA_BETTER] = 0.9
    stray[SIX_CLASSES.index("RCA_bad")] = 0.1
    rows = np.vstack([rows, stray])
    loop = LoopPredictions(
        loop_id=1, frame_ids=[10, 11, 12, 13, 14], frame_indices=np.array([0, 5, 10, 15, 20]), probabilities=rows
    )

    picks = select_key_frames([loop], selection())

    assert [(p.frame_id, p.laterality) for p in picks] == [(13, "RCA"), (11, "RCA")]
    assert picks[0].score == pytest.approx(0.95)


def test_per_exam_and_side_cap_keeps_the_best_across_loops():
    loops = [
        LoopPredictions(
            loop_id=loop_id,
            frame_ids=[loop_id * 100, loop_id * 100 + 1],
            frame_indices=np.array([0, 10]),
            probabilities=probabilities_with(scores, "LCA"),
        )
        for loop_id, scores in [(1, [0.9, 0.6]), (2, [0.7, 0.95]), (3, [0.55, 0.8])]
    ]
    rca = LoopPredictions(
        loop_id=4, frame_ids=[400], frame_indices=np.array([3]), probabilities=probabilities_with([0.7], "RCA")
    )

    picks = select_key_frames([*loops, rca], selection(max_per_exam_laterality=3))

    lca = [p for p in picks if p.laterality == "LCA"]
    assert [(p.frame_id, round(p.score, 2)) for p in lca] == [(201, 0.95), (100, 0.9), (301, 0.8)]
    assert [p.frame_id for p in picks if p.laterality == "RCA"] == [400]


def test_no_frame_above_threshold_no_key_frames():
    loop = LoopPredictions(
        loop_id=1, frame_ids=[1, 2], frame_indices=np.array([0, 9]), probabilities=probabilities_with([0.3, 0.2])
    )
    assert select_key_frames([loop], selection()) == []


# --- the database side -----------------------------------------------------------------------


@pytest.fixture
def version(db):
    return ModelVersionFactory(is_active=True)


def prelabel_loop(loop, version, better: dict[int, float], side: str = "LCA") -> None:
    """Pre-label every frame of ``loop``: frame index -> P(<side>_better); 0.1 elsewhere."""
    for frame in loop.frames.all():
        p = better.get(frame.index, 0.1)
        if p >= 0.5:
            make_prelabel(frame, version, f"{side}_better", p)
        else:
            make_prelabel(frame, version, f"{side}_other", 0.9)


def in_use(exam) -> list[tuple[int, str]]:
    return sorted((row.frame.index, row.origin) for row in key_frames_for(exam))


@pytest.fixture
def exam_with_prelabels(version):
    exam = ExamFactory()
    loop = CineLoopFactory(exam=exam, frame_count=20)
    prelabel_loop(loop, version, {3: 0.9, 5: 0.8, 12: 0.7})
    return exam


def test_pick_key_frames_stores_rows_with_score_and_model(exam_with_prelabels, version):
    rows = pick_key_frames(exam_with_prelabels, version, selection())

    assert sorted(row.frame.index for row in rows) == [3, 12]  # 5 is within 5 frames of 3
    stored = list(KeyFrame.objects.filter(exam=exam_with_prelabels).order_by("-score"))
    assert [(row.frame.index, row.laterality, row.origin, row.model_version_id) for row in stored] == [
        (3, "LCA", KeyFrameOrigin.MODEL, version.pk),
        (12, "LCA", KeyFrameOrigin.MODEL, version.pk),
    ]
    assert stored[0].score == pytest.approx(0.9)


def test_without_a_threshold_the_models_own_is_used(exam_with_prelabels):
    # Frames 3, 5 and 12 score 0.9, 0.8 and 0.7: a model whose validation split chose 0.75
    # picks only frame 3 (5 is too close to it); one that stored no threshold uses 0.5.
    tuned = ModelVersionFactory(config={"model": {"keyframe_threshold": 0.75}})
    untuned = ModelVersionFactory(config={"model": {}})
    for version in (tuned, untuned):
        for row in PreLabel.objects.filter(frame__loop__exam=exam_with_prelabels, model_version__is_active=True):
            make_prelabel(row.frame, version, row.predicted_class, max(row.probabilities.values()))

    assert [row.frame.index for row in pick_key_frames(exam_with_prelabels, tuned, selection(threshold=None))] == [3]
    untuned_rows = pick_key_frames(exam_with_prelabels, untuned, KeyFrameSelection())
    assert sorted(row.frame.index for row in untuned_rows) == [3, 12]


def test_re_extraction_replaces_the_model_rows_and_keeps_physician_decisions(exam_with_prelabels, version, physician):
    exam = exam_with_prelabels
    pick_key_frames(exam, version, selection())
    frame_3 = Frame.objects.get(loop__exam=exam, index=3)
    frame_12 = Frame.objects.get(loop__exam=exam, index=12)
    frame_18 = Frame.objects.get(loop__exam=exam, index=18)
    remove_key_frame(exam, frame_3, physician, "catheter overlaps the LAD")
    add_key_frame(exam, frame_18, physician, "late phase shows the collaterals", laterality="LCA")

    # A new model likes frames 3 (excluded by a physician), 8 and 12 differently.
    newer = ModelVersionFactory()
    prelabel_loop(exam.loops.get(), newer, {3: 0.95, 8: 0.9})
    pick_key_frames(exam, newer, selection(max_per_loop=3))

    rows = {row.frame.index: row for row in KeyFrame.objects.filter(exam=exam).select_related("frame")}
    assert rows[3].excluded_at is not None  # still excluded, though picked again
    assert rows[3].model_version_id == newer.pk
    assert rows[8].origin == KeyFrameOrigin.MODEL
    assert rows[8].excluded_at is None
    assert 12 not in rows  # the old model's pick the new one does not make
    assert rows[18].origin == KeyFrameOrigin.PHYSICIAN
    assert rows[18].excluded_at is None
    assert in_use(exam) == [(8, KeyFrameOrigin.MODEL), (18, KeyFrameOrigin.PHYSICIAN)]
    assert frame_12.key_frame_entries.count() == 0


def test_running_the_extraction_twice_changes_nothing(exam_with_prelabels, version):
    pick_key_frames(exam_with_prelabels, version, selection())
    first = list(KeyFrame.objects.filter(exam=exam_with_prelabels).values_list("uuid", "frame_id", "score"))
    pick_key_frames(exam_with_prelabels, version, selection())
    assert list(KeyFrame.objects.filter(exam=exam_with_prelabels).values_list("uuid", "frame_id", "score")) == first


# --- overrides -------------------------------------------------------------------------------


def test_remove_marks_the_row_excluded_and_records_it(exam_with_prelabels, version, physician):
    exam = exam_with_prelabels
    pick_key_frames(exam, version, selection())
    frame = Frame.objects.get(loop__exam=exam, index=3)

    row = remove_key_frame(exam, frame, physician, "  motion blur  ")

    assert KeyFrame.objects.filter(exam=exam).count() == 2  # nothing deleted
    row.refresh_from_db()
    assert row.excluded_by == physician
    assert row.excluded_at is not None
    assert in_use(exam) == [(12, KeyFrameOrigin.MODEL)]
    override = KeyFrameOverride.objects.get()
    assert (override.action, override.by, override.note, override.frame) == (
        OverrideAction.REMOVED,
        physician,
        "motion blur",
        frame,
    )
    with pytest.raises(KeyFrameError, match="not a key frame"):
        remove_key_frame(exam, frame, physician)


def test_adding_an_excluded_frame_restores_its_row(exam_with_prelabels, version, physician, admin_user):
    exam = exam_with_prelabels
    pick_key_frames(exam, version, selection())
    frame = Frame.objects.get(loop__exam=exam, index=3)
    removed = remove_key_frame(exam, frame, physician)

    restored = add_key_frame(exam, frame, admin_user, "it was fine")

    assert restored.pk == removed.pk
    assert restored.excluded_at is None
    assert restored.excluded_by is None
    assert restored.origin == KeyFrameOrigin.MODEL
    assert restored.score == pytest.approx(0.9)
    assert list(KeyFrameOverride.objects.order_by("at", "id").values_list("action", "by__username")) == [
        (OverrideAction.REMOVED, physician.username),
        (OverrideAction.ADDED, admin_user.username),
    ]
    with pytest.raises(KeyFrameError, match="already a key frame"):
        add_key_frame(exam, frame, admin_user)


def test_added_frame_takes_its_side_from_the_final_label_then_the_model(exam_with_prelabels, physician):
    exam = exam_with_prelabels
    frame_0 = Frame.objects.get(loop__exam=exam, index=0)
    frame_1 = Frame.objects.get(loop__exam=exam, index=1)
    FinalLabel.objects.create(
        frame=frame_0, laterality="RCA", category="bad", method=FinalLabelMethod.PHANTOM, decided_at=timezone.now()
    )

    assert add_key_frame(exam, frame_0, physician).laterality == "RCA"  # the final label
    assert add_key_frame(exam, frame_1, physician).laterality == "LCA"  # the active model's reading of the loop


def test_added_frame_without_any_side_asks_for_one(physician, db):
    exam = ExamFactory()
    frame = CineLoopFactory(exam=exam, frame_count=3).frames.get(index=1)
    with pytest.raises(KeyFrameError, match="choose LCA or RCA"):
        add_key_frame(exam, frame, physician)
    assert add_key_frame(exam, frame, physician, laterality="RCA").origin == KeyFrameOrigin.PHYSICIAN
    assert KeyFrameOverride.objects.count() == 1


def test_a_frame_of_another_exam_cannot_be_added(exam_with_prelabels, physician):
    other = CineLoopFactory(frame_count=3).frames.get(index=0)
    with pytest.raises(KeyFrameError, match="not one of the exam"):
        add_key_frame(exam_with_prelabels, other, physician, laterality="LCA")
    assert not KeyFrame.objects.exists()
    assert not KeyFrameOverride.objects.exists()
