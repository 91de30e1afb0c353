"""Physicians' frame labels: submit, withdraw and undo; final labels by agreement or by
adjudication; the adjudication queue, the worklist and what the labelling workspace shows.

Concurrency. Every change runs in one transaction that first locks the frame's row, so the
changes to one frame happen one after the other: on PostgreSQL through ``SELECT ... FOR
UPDATE``, on SQLite because the project opens every transaction as ``BEGIN IMMEDIATE`` (one
writer at a time; ``select_for_update`` is a no-op there). The final label computed at the end
of each change therefore sees every label committed before it. A label row carries a version:
a change must name the version it was based on and is refused with ``StaleLabel`` otherwise,
and the UPDATE itself is conditional on that version as a second guard. Submitting what is
already stored changes nothing, which makes a double key press or a second tab harmless.

Every change writes its ``LabelEvent`` (the audit trail) in the same transaction.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.db.models import (
    Avg,
    Case,
    CharField,
    Count,
    F,
    FloatField,
    IntegerField,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Value,
    When,
)
from django.db.models.functions import Coalesce
from django.utils import timezone

from annotation.models import (
    AnnotationProject,
    CineLoop,
    Exam,
    FinalLabel,
    FinalLabelAction,
    FinalLabelEvent,
    FinalLabelMethod,
    Frame,
    FrameLabel,
    KeyFrameCategory,
    LabelAction,
    LabelEvent,
    Laterality,
    PreLabel,
    WorklistOrder,
)
from cagvlm_site.roles import Role, has_role, is_adjudicator
from inference.models import ModelKind

if TYPE_CHECKING:
    from django.contrib.auth.models import User

MAX_NOTE_CHARS = 2000
#: The largest entropy of six class probabilities (nats): the worklist's uncertainty scale.
MAX_ENTROPY = math.log(6)
# One visit to a frame longer than a day is a clock error, not time spent.
MAX_SECONDS_PER_VISIT = 24 * 3600.0


class LabelError(Exception):
    """A label change that cannot be made; the message is meant for the physician."""


class InvalidLabel(LabelError, ValueError):
    pass


class StaleLabel(LabelError):
    """The change was based on a version of the label that is no longer the current one."""

    def __init__(self, current: FrameLabel | None) -> None:
        self.current = current
        if current is None:
            message = "This frame has no label of yours to change; the page shows its current state."
        else:
            message = (
                f"This frame's label was changed elsewhere (version {current.version}); "
                "the page shows its current state."
            )
        super().__init__(message)


class NoLabel(LabelError):
    pass


class NothingToUndo(LabelError):
    pass


class NotDisputed(LabelError):
    pass


@dataclass(frozen=True)
class LabelOutcome:
    label: FrameLabel
    # None when the submission changed nothing.
    action: LabelAction | None


# --- validation and helpers ------------------------------------------------------------------


def validate_label_values(laterality: Any, category: Any, note: Any = "") -> tuple[str, str, str]:
    """The laterality, category and note as stored, or InvalidLabel naming what is wrong."""
    if laterality not in Laterality.values:
        raise InvalidLabel(f"{laterality!r} is not a laterality; use one of {', '.join(Laterality.values)}.")
    if category not in KeyFrameCategory.values:
        raise InvalidLabel(
            f"{category!r} is not a key-frame category; use one of {', '.join(KeyFrameCategory.values)}."
        )
    note = "" if note is None else str(note).strip()
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidLabel(f"The note is {len(note)} characters long; at most {MAX_NOTE_CHARS} are kept.")
    return laterality, category, note


def _validated_seconds(seconds_spent: Any) -> float:
    try:
        seconds = float(seconds_spent or 0.0)
    except (TypeError, ValueError):
        raise InvalidLabel(f"{seconds_spent!r} is not a number of seconds.") from None
    if not math.isfinite(seconds) or seconds < 0 or seconds > MAX_SECONDS_PER_VISIT:
        raise InvalidLabel(
            f"{seconds_spent!r} seconds is not a time spent on a frame (0 to {MAX_SECONDS_PER_VISIT:.0f})."
        )
    return seconds


def _lock_frame(frame_id: int) -> None:
    """Serialise the changes to one frame's labels until the transaction ends."""
    list(Frame.objects.select_for_update().filter(pk=frame_id).values_list("pk", flat=True))


def _label_of(frame_id: int, physician: User) -> FrameLabel | None:
    return FrameLabel.objects.select_for_update().filter(frame_id=frame_id, physician=physician).first()


def _same_content(label: FrameLabel, laterality: str, category: str, note: str) -> bool:
    return label.is_active and (label.laterality, label.category, label.note) == (laterality, category, note)


def _record(
    label: FrameLabel,
    actor: User,
    action: LabelAction,
    before: dict[str, Any] | None,
    reverts: LabelEvent | None = None,
) -> LabelEvent:
    return LabelEvent.objects.create(
        label=label,
        frame_id=label.frame_id,
        actor=actor,
        action=action,
        before=before,
        after=label.snapshot(),
        reverts=reverts,
    )


def _apply_change(label: FrameLabel, **fields: Any) -> FrameLabel:
    """Write ``fields`` and the next version, only if the row is still at ``label.version``."""
    updated = FrameLabel.objects.filter(pk=label.pk, version=label.version).update(
        **fields, version=label.version + 1, updated_at=timezone.now()
    )
    if not updated:
        # Unreachable while the frame lock is held; kept so a lost update can never happen.
        raise StaleLabel(FrameLabel.objects.get(pk=label.pk))
    label.refresh_from_db()
    return label


def project_of(frame: Frame) -> AnnotationProject:
    """The frame's exam's project, else the default one: from the frame's loaded relations
    when it came with them (as the label API loads it), else in one query (this runs on every
    label)."""
    if (
        Frame._meta.get_field("loop").is_cached(frame)
        and CineLoop._meta.get_field("exam").is_cached(frame.loop)
        and Exam._meta.get_field("project").is_cached(frame.loop.exam)
    ):
        return frame.loop.exam.project or AnnotationProject.default()
    project = (
        AnnotationProject.objects.filter(Q(exams__loops__frames=frame) | Q(is_default=True))
        .order_by("is_default")
        .first()
    )
    return project or AnnotationProject.default()


# --- submitting, withdrawing, undoing --------------------------------------------------------


def submit_label(
    frame: Frame,
    physician: User,
    laterality: str,
    category: str,
    note: str = "",
    seconds_spent: float = 0.0,
    expected_version: int | None = None,
) -> FrameLabel:
    """Create or change the physician's label of the frame.

    ``expected_version`` is None for a new label (or to label again after a withdrawal) and
    the current version for a change; anything else raises ``StaleLabel`` with the current
    label. Submitting what is already stored returns the label unchanged, whatever the
    version. ``seconds_spent`` is the time of this visit; the label keeps the running total.
    """
    return record_label(frame, physician, laterality, category, note, seconds_spent, expected_version).label


def record_label(
    frame: Frame,
    physician: User,
    laterality: str,
    category: str,
    note: str = "",
    seconds_spent: float = 0.0,
    expected_version: int | None = None,
    *,
    imported_by: User | None = None,
) -> LabelOutcome:
    """``submit_label`` that also says what it did; ``imported_by`` marks an import (the
    admin who imported it is the actor of the audit event)."""
    laterality, category, note = validate_label_values(laterality, category, note)
    seconds = _validated_seconds(seconds_spent)
    actor = imported_by or physician
    with transaction.atomic():
        _lock_frame(frame.pk)
        label = _label_of(frame.pk, physician)
        if label is None and expected_version is None:
            try:
                with transaction.atomic():
                    label = FrameLabel.objects.create(
                        frame=frame,
                        physician=physician,
                        laterality=laterality,
                        category=category,
                        note=note,
                        seconds_spent=seconds,
                    )
            except IntegrityError:
                # Another request of the same physician created it first (only possible where
                # the frame lock does not serialise, e.g. a SQLite set up without IMMEDIATE).
                label = _label_of(frame.pk, physician)
            else:
                action = LabelAction.IMPORTED if imported_by else LabelAction.CREATED
                _record(label, actor, action, before=None)
                _refresh_final_label_locked(frame, actor)
                return LabelOutcome(label, action)
        if label is None:
            raise StaleLabel(None)
        if _same_content(label, laterality, category, note):
            return LabelOutcome(label, None)
        # A label exists: a change must be based on its current version. A "new" label while
        # one is active means the page that sent it had not seen that label.
        if expected_version is None and label.is_active:
            raise StaleLabel(label)
        if expected_version is not None and expected_version != label.version:
            raise StaleLabel(label)
        before = label.snapshot()
        was_active = label.is_active
        label = _apply_change(
            label,
            laterality=laterality,
            category=category,
            note=note,
            seconds_spent=label.seconds_spent + seconds,
            withdrawn_at=None,
        )
        if imported_by:
            action = LabelAction.IMPORTED
        elif was_active:
            action = LabelAction.CHANGED
        else:
            action = LabelAction.RESTORED
        _record(label, actor, action, before)
        _refresh_final_label_locked(frame, actor)
        return LabelOutcome(label, action)


def withdraw_label(frame: Frame, physician: User, expected_version: int) -> FrameLabel:
    """Withdraw the physician's label (it stays stored, marked withdrawn). Withdrawing a label
    already withdrawn changes nothing."""
    with transaction.atomic():
        _lock_frame(frame.pk)
        label = _label_of(frame.pk, physician)
        if label is None:
            raise NoLabel("You have not labelled this frame.")
        if not label.is_active:
            return label
        if expected_version != label.version:
            raise StaleLabel(label)
        before = label.snapshot()
        label = _apply_change(label, withdrawn_at=timezone.now())
        _record(label, physician, LabelAction.WITHDRAWN, before)
        _refresh_final_label_locked(frame, physician)
        return label


def _last_undoable_event(physician: User) -> LabelEvent | None:
    """The physician's newest change of their own label that no undo has reverted yet.
    Undo events themselves are skipped: pressing undo again goes one step further back."""
    return (
        LabelEvent.objects.filter(
            actor=physician, label__physician=physician, reverts__isnull=True, reverted_by__isnull=True
        )
        .exclude(action=LabelAction.IMPORTED)
        .select_related("label")
        .first()
    )


def _content(snapshot: dict[str, Any]) -> tuple[Any, ...]:
    return (snapshot["laterality"], snapshot["category"], snapshot["note"], snapshot["withdrawn_at"] is None)


def undo_last(physician: User) -> FrameLabel:
    """Revert the physician's most recent label event: a creation is withdrawn, a change goes
    back to the label before it, a withdrawal is restored. The undo is itself an audit event
    naming the event it reverts. Raises NothingToUndo, or StaleLabel when the label was changed
    since by someone else (an import)."""
    # Two undos at once (two tabs) may pick the same event; the loser of the frame lock looks
    # again and takes the next one, as pressing undo twice should.
    for _attempt in range(3):
        event = _last_undoable_event(physician)
        if event is None:
            raise NothingToUndo("You have no label change to undo.")
        with transaction.atomic():
            _lock_frame(event.frame_id)
            latest = _last_undoable_event(physician)
            if latest is None or latest.pk != event.pk:
                continue
            label = _label_of(event.frame_id, physician)
            assert label is not None  # the event names it, and labels are never deleted
            if event.after is None or _content(label.snapshot()) != _content(event.after):
                raise StaleLabel(label)
            before = label.snapshot()
            target = event.before
            # The time spent stays: undoing a label does not undo the reading of the frame.
            if target is None:
                label = _apply_change(label, withdrawn_at=timezone.now())
            else:
                label = _apply_change(
                    label,
                    laterality=target["laterality"],
                    category=target["category"],
                    note=target["note"],
                    withdrawn_at=None if target["withdrawn_at"] is None else timezone.now(),
                )
            if before["withdrawn_at"] is None and not label.is_active:
                action = LabelAction.WITHDRAWN
            elif before["withdrawn_at"] is not None and label.is_active:
                action = LabelAction.RESTORED
            else:
                action = LabelAction.CHANGED
            _record(label, physician, action, before, reverts=event)
            _refresh_final_label_locked(label.frame, physician)
            return label
    raise NothingToUndo("Your label changes were undone elsewhere at the same moment; reload the page.")


# --- final labels ----------------------------------------------------------------------------


def audit_final_label(
    frame_id: int, actor: User | None, before: dict[str, Any] | None, after: FinalLabel | None
) -> FinalLabelEvent:
    """Write the audit event of a change of a frame's final label from ``before`` (a snapshot,
    or None when it had none) to ``after`` (None when cleared), in the caller's transaction."""
    if before is None:
        action = FinalLabelAction.DECIDED
    elif after is None:
        action = FinalLabelAction.CLEARED
    else:
        action = FinalLabelAction.CHANGED
    return FinalLabelEvent.objects.create(
        frame_id=frame_id,
        actor=actor,
        action=action,
        before=before,
        after=after.snapshot() if after is not None else None,
    )


def refresh_final_label(frame: Frame, actor: User | None = None) -> FinalLabel | None:
    """Bring the frame's final label in line with its active labels.

    At least ``labels_required`` active labels, all of one class: the final label by
    agreement. Anything else: no final label by agreement (disagreeing labels put the frame
    in the adjudication queue). A final label decided by a person (adjudication, import) or
    taken from the phantom's ground truth is never touched here. Each change is audited, with
    ``actor`` (the physician whose label change caused it) as its author.
    """
    with transaction.atomic():
        _lock_frame(frame.pk)
        return _refresh_final_label_locked(frame, actor)


def _refresh_final_label_locked(frame: Frame, actor: User | None) -> FinalLabel | None:
    """``refresh_final_label`` inside a transaction that already holds the frame's lock (the
    label changes call it so, saving a savepoint and a second lock per label)."""
    final = FinalLabel.objects.filter(frame=frame).first()
    if final is not None and final.method != FinalLabelMethod.AGREEMENT:
        return final
    active = list(
        FrameLabel.objects.filter(frame=frame, withdrawn_at=None)
        .order_by("physician__username")
        .values_list("laterality", "category", "physician__username")
    )
    classes = {(laterality, category) for laterality, category, _ in active}
    if len(active) >= project_of(frame).labels_required and len(classes) == 1:
        [(laterality, category)] = classes
        note = f"Agreement of {len(active)} physicians: {', '.join(name for _, _, name in active)}."
        if final is None:
            final = FinalLabel.objects.create(
                frame=frame,
                laterality=laterality,
                category=category,
                method=FinalLabelMethod.AGREEMENT,
                decided_at=timezone.now(),
                note=note,
            )
            audit_final_label(frame.pk, actor, None, final)
        elif (final.laterality, final.category, final.note) != (laterality, category, note):
            before = final.snapshot()
            final.laterality, final.category, final.note = laterality, category, note
            final.decided_at = timezone.now()
            final.save()
            audit_final_label(frame.pk, actor, before, final)
        return final
    if final is not None:
        # Derived, not decided by anyone: the labels it came from are all kept, and the
        # audit event keeps what it was.
        before = final.snapshot()
        FinalLabel.objects.filter(pk=final.pk).delete()
        audit_final_label(frame.pk, actor, before, None)
    return None


def reapply_agreement(exams: QuerySet[Exam], actor: User) -> int:
    """Re-derive the final labels by agreement of the exams' labelled frames, after their
    project (or its number of agreeing labels needed) changed; each change is audited with
    ``actor`` as its author. Returns the number of frames looked at."""
    frames = Frame.objects.filter(loop__exam__in=exams, labels__withdrawn_at=None).distinct().order_by("pk")
    count = 0
    for frame in frames.iterator():
        refresh_final_label(frame, actor)
        count += 1
    return count


def move_exams(exams: QuerySet[Exam], project: AnnotationProject, actor: User) -> int:
    """Put the exams in ``project`` (its mode and agreement rule apply to them from now on).
    Returns the number of exams moved."""
    with transaction.atomic():
        moving = exams.exclude(project=project)
        if project.is_default:
            moving = moving.exclude(project__isnull=True)
        ids = list(moving.values_list("pk", flat=True))
        Exam.objects.filter(pk__in=ids).update(project=project, updated_at=timezone.now())
        reapply_agreement(Exam.objects.filter(pk__in=ids), actor)
    return len(ids)


def adjudication_queue() -> QuerySet[Frame]:
    """Frames without a final label whose active labels disagree, a loop's frames together."""
    active = Q(labels__withdrawn_at=None)
    return (
        Frame.objects.filter(final_label__isnull=True)
        .annotate(
            laterality_count=Count("labels__laterality", filter=active, distinct=True),
            category_count=Count("labels__category", filter=active, distinct=True),
            label_count=Count("labels", filter=active),
        )
        .filter(Q(laterality_count__gt=1) | Q(category_count__gt=1))
        .order_by("loop_id", "index")
    )


def adjudicate(frame: Frame, user: User, laterality: str, category: str, note: str = "") -> FinalLabel:
    """Decide the final label of a disputed frame (or change an earlier adjudication)."""
    if not is_adjudicator(user):
        raise PermissionDenied("Only admins and senior physicians adjudicate.")
    laterality, category, note = validate_label_values(laterality, category, note)
    with transaction.atomic():
        _lock_frame(frame.pk)
        final = FinalLabel.objects.filter(frame=frame).first()
        classes = set(FrameLabel.objects.filter(frame=frame, withdrawn_at=None).values_list("laterality", "category"))
        if len(classes) < 2 or (final is not None and final.method != FinalLabelMethod.ADJUDICATION):
            raise NotDisputed("This frame's labels do not disagree: there is nothing to adjudicate.")
        if final is not None and (final.laterality, final.category, final.note, final.decided_by_id) == (
            laterality,
            category,
            note,
            user.pk,
        ):
            return final  # the same decision again (a double submission): nothing changes
        before = final.snapshot() if final is not None else None
        decided, _ = FinalLabel.objects.update_or_create(
            frame=frame,
            defaults={
                "laterality": laterality,
                "category": category,
                "method": FinalLabelMethod.ADJUDICATION,
                "decided_by": user,
                "decided_at": timezone.now(),
                "note": note,
            },
        )
        audit_final_label(frame.pk, user, before, decided)
        return decided


# --- worklist --------------------------------------------------------------------------------


def _count(rows: QuerySet, outer_path: str, outer_field: str = "pk", **conditions: object) -> Coalesce:
    """A correlated COUNT of ``rows`` whose ``outer_path`` is the outer row's ``outer_field``
    (subqueries: joining frames and labels at once would multiply the rows before counting)."""
    counted = (
        rows.filter(**{outer_path: OuterRef(outer_field)}, **conditions)
        .order_by()
        .values(outer_path)
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


def _mean_of_active_prelabels(field: str) -> Subquery:
    """The mean ``field`` of the active key-frame model's pre-labels of the outer loop's
    sampled frames (None when it has pre-labelled none of them)."""
    means = (
        PreLabel.objects.filter(
            frame__loop=OuterRef("pk"),
            frame__is_sampled=True,
            model_version__kind=ModelKind.KEYFRAME_CNN,
            model_version__is_active=True,
        )
        .order_by()
        .values("frame__loop")
        .annotate(mean=Avg(field))
        .values("mean")
    )
    return Subquery(means, output_field=FloatField())


def rank_loops_for_labelling(loops: QuerySet[CineLoop], physician: User) -> QuerySet[CineLoop]:
    """The order in which a physician is offered loops to label: the loops the active
    key-frame CNN is least sure of first, so that each label teaches it the most.

    Each loop follows its project's ``worklist_order`` (the default project's for exams
    without one): ``entropy``, the highest mean entropy of the model's pre-labels of the loop's
    sampled frames first; ``margin``, the smallest mean margin first; ``acquisition``, none.
    Both measures are brought to one 0-1 scale (entropy over its maximum, ln 6; one minus the
    margin), so projects with different orders share one list. Loops without pre-labels of
    the active model, and loops of projects in acquisition order, follow in acquisition order
    (exam by exam, loops as they were acquired).

    All in the one query of the list: correlated subqueries, no query per loop. The loops
    carry ``worklist_order``, ``prelabel_entropy``, ``prelabel_margin`` and ``uncertainty``
    (None where not ranked by it) for the page to show.
    """
    default_order = AnnotationProject.objects.filter(is_default=True).values("worklist_order")[:1]
    ranked = (
        loops.annotate(
            worklist_order=Coalesce(
                F("exam__project__worklist_order"),
                Subquery(default_order, output_field=CharField()),
                Value(WorklistOrder.ENTROPY.value),
                output_field=CharField(),
            ),
        )
        .annotate(
            prelabel_entropy=_mean_of_active_prelabels("entropy"),
            prelabel_margin=_mean_of_active_prelabels("margin"),
        )
        .annotate(
            uncertainty=Case(
                When(worklist_order=WorklistOrder.ENTROPY, then=F("prelabel_entropy") / Value(MAX_ENTROPY)),
                When(worklist_order=WorklistOrder.MARGIN, then=Value(1.0) - F("prelabel_margin")),
                default=None,
                output_field=FloatField(),
            ),
        )
    )
    return ranked.order_by(
        F("uncertainty").desc(nulls_last=True),
        "exam__study_date",
        "exam__created_at",
        F("acquisition_datetime").asc(nulls_last=True),
        "series_number",
        "instance_number",
        "created_at",
    )


def worklist_for(physician: User) -> QuerySet[CineLoop]:
    """Loops with sampled frames this physician has not labelled yet, each annotated with
    the physician's progress in the loop (``labelled_count`` of ``sampled_count``) and in its
    exam (``exam_labelled_count`` of ``exam_sampled_count``)."""
    sampled = Frame.objects.filter(is_sampled=True)
    mine = FrameLabel.objects.filter(physician=physician, withdrawn_at=None, frame__is_sampled=True)
    loops = (
        CineLoop.objects.select_related("exam")
        .annotate(
            sampled_count=_count(sampled, "loop"),
            labelled_count=_count(mine, "frame__loop"),
            exam_sampled_count=_count(sampled, "loop__exam", "exam"),
            exam_labelled_count=_count(mine, "frame__loop__exam", "exam"),
        )
        .filter(sampled_count__gt=F("labelled_count"))
    )
    return rank_loops_for_labelling(loops, physician)


# --- what the workspace shows ----------------------------------------------------------------


@dataclass(frozen=True)
class FrameView:
    frame: Frame
    my_label: FrameLabel | None
    disputed: bool
    prelabel: PreLabel | None


@dataclass(frozen=True)
class Workspace:
    loop: CineLoop
    project: AnnotationProject
    frames: list[FrameView]
    next_loop: CineLoop | None


def _frame_views(frames: list[Frame], loop: CineLoop, project: AnnotationProject, user: User) -> list[FrameView]:
    """What ``user`` may see of each frame, in a constant number of queries.

    Only the user's own label: other physicians' labels stay hidden in both modes (their
    agreement must stay independent). Only adjudicators learn that a frame is disputed.
    """
    frame_ids = [frame.pk for frame in frames]
    mine = {
        label.frame_id: label
        for label in FrameLabel.objects.filter(frame_id__in=frame_ids, physician=user, withdrawn_at=None)
    }
    disputed: set[int] = set()
    if is_adjudicator(user):
        disputed = set(adjudication_queue().filter(loop=loop, pk__in=frame_ids).values_list("pk", flat=True))
    prelabels: dict[int, PreLabel] = {}
    if project.is_assisted:
        # The active model's pre-label of each frame, else the newest of another version.
        shown = (
            PreLabel.objects.filter(frame_id__in=frame_ids)
            .select_related("model_version")
            .order_by("frame_id", "-model_version__is_active", "-created_at")
        )
        for prelabel in shown:
            prelabels.setdefault(prelabel.frame_id, prelabel)
    return [
        FrameView(
            frame=frame, my_label=mine.get(frame.pk), disputed=frame.pk in disputed, prelabel=prelabels.get(frame.pk)
        )
        for frame in frames
    ]


def _project_of_loop(loop: CineLoop) -> AnnotationProject:
    return loop.exam.project or AnnotationProject.default()


def load_workspace(loop: CineLoop, user: User) -> Workspace:
    """Everything the viewer needs for one loop; ``loop`` comes with its exam and project."""
    project = _project_of_loop(loop)
    frames = list(loop.frames.order_by("index"))
    next_loop = None
    if has_role(user, Role.PHYSICIAN):
        next_loop = worklist_for(user).exclude(pk=loop.pk).first()
    return Workspace(loop=loop, project=project, frames=_frame_views(frames, loop, project, user), next_loop=next_loop)


def frame_view(frame: Frame, user: User) -> FrameView:
    """One frame as the workspace shows it; ``frame`` comes with its loop, exam and project."""
    loop = frame.loop
    [view] = _frame_views([frame], loop, _project_of_loop(loop), user)
    return view
