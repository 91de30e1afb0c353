"""The key frames of an exam: what the report model reads.

The stage-1 CNN's pre-labels pick them (``pick_key_frames``): per loop, the loop's laterality
is the side its frames are most probably of (summed LCA against summed RCA probability); the
frames whose probability of "<laterality>_better" reaches the threshold are taken greedily by
that score, at least ``min_gap_frames`` apart, at most ``max_per_loop`` per loop and
``max_per_exam_laterality`` per exam and side. The picking itself is a pure function over
arrays (``select_key_frames``); the database side replaces the model's rows of the exam.

Physicians correct the choice (``add_key_frame``, ``remove_key_frame``): every correction is a
KeyFrameOverride row, and no correction deletes a KeyFrame row (a removal marks it excluded,
an addition restores it or adds a row of origin physician). Re-extraction with another model
replaces only the model's own rows still in use: rows a physician added stay, and a frame a
physician excluded stays excluded even when the new model picks it again.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
from django.db import transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from annotation.models import SIX_CLASSES, Exam, FinalLabel, Frame, Laterality, PreLabel
from inference.models import KeyFrame, KeyFrameOrigin, KeyFrameOverride, ModelKind, ModelVersion, OverrideAction
from inference.parameters import KeyFrameSelection

if TYPE_CHECKING:
    from django.contrib.auth.models import User

#: Columns of the six-class probabilities per side, and the column of "<side>_better".
SIDE_COLUMNS = {
    Laterality.LCA.value: [SIX_CLASSES.index(f"LCA_{c}") for c in ("better", "bad", "other")],
    Laterality.RCA.value: [SIX_CLASSES.index(f"RCA_{c}") for c in ("better", "bad", "other")],
}
BETTER_COLUMN = {side: SIX_CLASSES.index(f"{side}_better") for side in SIDE_COLUMNS}
MAX_NOTE_CHARS = 2000


class KeyFrameError(Exception):
    """A key-frame correction that cannot be made; the message is meant for the physician."""


# --- picking: pure functions over arrays -----------------------------------------------------


@dataclass(frozen=True)
class LoopPredictions:
    """One loop's pre-labelled frames: ids, frame numbers and (N, 6) probabilities in
    SIX_CLASSES order, the rows in any order."""

    loop_id: int
    frame_ids: Sequence[int]
    frame_indices: np.ndarray
    probabilities: np.ndarray


#: The key-frame threshold of a model that stored none.
KEYFRAME_THRESHOLD = 0.5


@dataclass(frozen=True)
class KeyFramePick:
    frame_id: int
    loop_id: int
    frame_index: int
    laterality: str
    score: float


def loop_laterality(probabilities: np.ndarray) -> str:
    """The side a loop shows: summed LCA against summed RCA probability over its frames
    (a tie reads as LCA)."""
    totals = {side: float(probabilities[:, columns].sum()) for side, columns in SIDE_COLUMNS.items()}
    return Laterality.RCA.value if totals[Laterality.RCA.value] > totals[Laterality.LCA.value] else Laterality.LCA.value


def pick_in_loop(frame_indices: np.ndarray, scores: np.ndarray, selection: KeyFrameSelection) -> list[int]:
    """Positions (into the arrays) of a loop's key frames, best first: scores at or above the
    threshold, taken greedily by score (the earlier frame on a tie), each at least
    ``min_gap_frames`` from every frame already taken, at most ``max_per_loop``."""
    indices = np.asarray(frame_indices, dtype=np.int64)
    values = np.asarray(scores, dtype=np.float64)
    threshold = KEYFRAME_THRESHOLD if selection.threshold is None else selection.threshold
    candidates = np.flatnonzero(values >= threshold)
    # Sort by score descending, then frame number ascending: a deterministic order.
    order = candidates[np.lexsort((indices[candidates], -values[candidates]))]
    taken: list[int] = []
    for position in order:
        if len(taken) >= selection.max_per_loop:
            break
        if all(abs(int(indices[position]) - int(indices[other])) >= selection.min_gap_frames for other in taken):
            taken.append(int(position))
    return taken


def select_key_frames(loops: Sequence[LoopPredictions], selection: KeyFrameSelection) -> list[KeyFramePick]:
    """The key frames of an exam from its loops' predictions: per loop its side and its best
    frames (``pick_in_loop``), then per side the best ``max_per_exam_laterality`` of those.
    Returned by side, then score descending."""
    by_side: dict[str, list[KeyFramePick]] = defaultdict(list)
    for loop in loops:
        probabilities = np.asarray(loop.probabilities, dtype=np.float64)
        if probabilities.size == 0:
            continue
        side = loop_laterality(probabilities)
        scores = probabilities[:, BETTER_COLUMN[side]]
        for position in pick_in_loop(loop.frame_indices, scores, selection):
            by_side[side].append(
                KeyFramePick(
                    frame_id=int(loop.frame_ids[position]),
                    loop_id=loop.loop_id,
                    frame_index=int(loop.frame_indices[position]),
                    laterality=side,
                    score=float(scores[position]),
                )
            )
    picks: list[KeyFramePick] = []
    for side in sorted(by_side):
        ranked = sorted(by_side[side], key=lambda pick: (-pick.score, pick.loop_id, pick.frame_index))
        picks.extend(ranked[: selection.max_per_exam_laterality])
    return picks


# --- the database side -----------------------------------------------------------------------


def exam_predictions(exam: Exam, version: ModelVersion) -> list[LoopPredictions]:
    """The model version's pre-labels of the exam's frames, per loop (one query)."""
    rows = (
        PreLabel.objects.filter(frame__loop__exam=exam, model_version=version)
        .order_by("frame__loop_id", "frame__index")
        .values_list("frame_id", "frame__loop_id", "frame__index", "probabilities")
    )
    grouped: dict[int, list[tuple[int, int, list[float]]]] = defaultdict(list)
    for frame_id, loop_id, index, probabilities in rows:
        grouped[loop_id].append((frame_id, index, [float(probabilities[name]) for name in SIX_CLASSES]))
    return [
        LoopPredictions(
            loop_id=loop_id,
            frame_ids=[frame_id for frame_id, _, _ in entries],
            frame_indices=np.array([index for _, index, _ in entries], dtype=np.int64),
            probabilities=np.array([probabilities for _, _, probabilities in entries], dtype=np.float64),
        )
        for loop_id, entries in grouped.items()
    ]


def _lock_exam(exam: Exam) -> None:
    """Serialise changes to one exam's key frames (re-extraction against a correction)."""
    list(Exam.objects.select_for_update().filter(pk=exam.pk).values_list("pk", flat=True))


def model_keyframe_threshold(version: ModelVersion) -> float:
    """The threshold on P(better) the model was measured with (tuned on its validation split
    when trained so), else 0.5."""
    value = version.model_settings.get("keyframe_threshold")
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else KEYFRAME_THRESHOLD


def pick_key_frames(exam: Exam, version: ModelVersion, selection: KeyFrameSelection | None = None) -> list[KeyFrame]:
    """Pick the exam's key frames from ``version``'s pre-labels and store them.

    Replaces the model's rows of the exam that are still in use; keeps every physician
    decision: rows of origin physician are untouched, and excluded rows stay excluded (when the
    new model picks such a frame again, its row takes the new score and model version and stays
    excluded). Returns the rows of the model's picks, excluded ones included.
    """
    selection = selection or KeyFrameSelection.model_validate({})
    if selection.threshold is None:
        selection = selection.model_copy(update={"threshold": model_keyframe_threshold(version)})
    picks = select_key_frames(exam_predictions(exam, version), selection)
    with transaction.atomic():
        _lock_exam(exam)
        existing = {row.frame_id: row for row in KeyFrame.objects.filter(exam=exam)}
        picked_ids = {pick.frame_id for pick in picks}
        # The model's rows in use that this model does not pick again go; physicians' rows and
        # excluded rows (a physician's decision) stay.
        stale = [
            row.pk
            for row in existing.values()
            if row.origin == KeyFrameOrigin.MODEL and row.excluded_at is None and row.frame_id not in picked_ids
        ]
        KeyFrame.objects.filter(pk__in=stale).delete()
        result: list[KeyFrame] = []
        new_rows: list[KeyFrame] = []
        for pick in picks:
            row = existing.get(pick.frame_id)
            if row is None:
                new_rows.append(
                    KeyFrame(
                        exam=exam,
                        frame_id=pick.frame_id,
                        laterality=pick.laterality,
                        score=pick.score,
                        model_version=version,
                        origin=KeyFrameOrigin.MODEL,
                    )
                )
            elif row.origin == KeyFrameOrigin.MODEL:
                row.laterality, row.score, row.model_version = pick.laterality, pick.score, version
                row.save(update_fields=["laterality", "score", "model_version", "updated_at"])
                result.append(row)
            else:
                # A physician added this frame: it stays theirs; the model's score is noted.
                row.score = pick.score
                row.save(update_fields=["score", "updated_at"])
                result.append(row)
        result.extend(KeyFrame.objects.bulk_create(new_rows))
    return result


def key_frames_for(exam: Exam) -> QuerySet[KeyFrame]:
    """The exam's key frames in use (not excluded), with their frame, loop and model version:
    what the report model reads. Side by side, best score first."""
    return (
        KeyFrame.objects.filter(exam=exam, excluded_at=None)
        .select_related("frame__loop", "model_version")
        .order_by("laterality", F("score").desc(nulls_last=True), "frame__loop_id", "frame__index")
    )


def _clean_note(note: str | None) -> str:
    note = (note or "").strip()
    if len(note) > MAX_NOTE_CHARS:
        raise KeyFrameError(f"The note is {len(note)} characters long; at most {MAX_NOTE_CHARS} are kept.")
    return note


def _check_frame_of_exam(exam: Exam, frame: Frame) -> None:
    if not Frame.objects.filter(pk=frame.pk, loop__exam=exam).exists():
        raise KeyFrameError("This frame is not one of the exam's frames.")


def laterality_of_frame(frame: Frame) -> str | None:
    """The side a physician adds a frame as when they do not say: the frame's final label,
    else the side the active model reads the frame's loop as; None when neither is known."""
    final = FinalLabel.objects.filter(frame=frame).values_list("laterality", flat=True).first()
    if final:
        return final
    rows = PreLabel.objects.filter(
        frame__loop_id=frame.loop_id, model_version__kind=ModelKind.KEYFRAME_CNN, model_version__is_active=True
    ).values_list("probabilities", flat=True)
    probabilities = [[float(row[name]) for name in SIX_CLASSES] for row in rows]
    if not probabilities:
        return None
    return loop_laterality(np.array(probabilities, dtype=np.float64))


def add_key_frame(exam: Exam, frame: Frame, user: User, note: str = "", laterality: str | None = None) -> KeyFrame:
    """A physician makes ``frame`` a key frame of the exam: restores an excluded row, or adds
    a row of origin physician. Recorded as a KeyFrameOverride. ``laterality`` None: the
    frame's final label, else the side the active model reads its loop as."""
    note = _clean_note(note)
    if laterality is not None and laterality not in Laterality.values:
        raise KeyFrameError(f"{laterality!r} is not a laterality; use one of {', '.join(Laterality.values)}.")
    _check_frame_of_exam(exam, frame)
    with transaction.atomic():
        _lock_exam(exam)
        row = KeyFrame.objects.filter(exam=exam, frame=frame).first()
        if row is not None and row.excluded_at is None:
            raise KeyFrameError(f"Frame {frame.index} is already a key frame of this exam.")
        if row is not None:
            row.excluded_at, row.excluded_by = None, None
            fields = ["excluded_at", "excluded_by", "updated_at"]
            if laterality is not None and laterality != row.laterality:
                row.laterality = laterality
                fields.append("laterality")
            row.save(update_fields=fields)
        else:
            side = laterality or laterality_of_frame(frame)
            if side is None:
                raise KeyFrameError(
                    f"The side of frame {frame.index} is not known (no final label, no pre-labels): choose LCA or RCA."
                )
            row = KeyFrame.objects.create(
                exam=exam, frame=frame, laterality=side, origin=KeyFrameOrigin.PHYSICIAN, model_version=None
            )
        KeyFrameOverride.objects.create(exam=exam, frame=frame, action=OverrideAction.ADDED, by=user, note=note)
    return row


def remove_key_frame(exam: Exam, frame: Frame, user: User, note: str = "") -> KeyFrame:
    """A physician takes ``frame`` out of the exam's key frames: the row stays, marked
    excluded (by whom, when), and the removal is recorded as a KeyFrameOverride."""
    note = _clean_note(note)
    with transaction.atomic():
        _lock_exam(exam)
        row = KeyFrame.objects.filter(exam=exam, frame=frame, excluded_at=None).first()
        if row is None:
            raise KeyFrameError(f"Frame {frame.index} is not a key frame of this exam.")
        row.excluded_at, row.excluded_by = timezone.now(), user
        row.save(update_fields=["excluded_at", "excluded_by", "updated_at"])
        KeyFrameOverride.objects.create(exam=exam, frame=frame, action=OverrideAction.REMOVED, by=user, note=note)
    return row


# --- what the exam page shows ----------------------------------------------------------------


@dataclass
class KeyFrameSection:
    """The exam page's key-frame section, read in a constant number of queries."""

    in_use: list[KeyFrame]
    excluded: list[KeyFrame]
    overrides: list[KeyFrameOverride]
    per_side: dict[str, int] = field(default_factory=dict)


def key_frame_section(exam: Exam) -> KeyFrameSection:
    rows = list(
        KeyFrame.objects.filter(exam=exam)
        .select_related("frame__loop", "model_version", "excluded_by")
        .order_by("laterality", F("score").desc(nulls_last=True), "frame__loop_id", "frame__index")
    )
    in_use = [row for row in rows if row.excluded_at is None]
    per_side: dict[str, int] = defaultdict(int)
    for row in in_use:
        per_side[row.laterality] += 1
    overrides = list(exam.key_frame_overrides.select_related("frame__loop", "by").order_by("-at", "-id"))
    return KeyFrameSection(
        in_use=in_use,
        excluded=[row for row in rows if row.excluded_at is not None],
        overrides=overrides,
        per_side=dict(per_side),
    )
