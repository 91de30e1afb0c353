"""The labelling domain: labels and their versions, the audit trail, undo, final labels by
agreement and by adjudication, the adjudication queue and the worklist."""

from __future__ import annotations

import datetime

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError

from annotation.labels import (
    InvalidLabel,
    NoLabel,
    NotDisputed,
    NothingToUndo,
    StaleLabel,
    adjudicate,
    adjudication_queue,
    record_label,
    refresh_final_label,
    submit_label,
    undo_last,
    withdraw_label,
    worklist_for,
)
from annotation.models import (
    AnnotationMode,
    AnnotationProject,
    Exam,
    FinalLabel,
    FinalLabelEvent,
    FinalLabelMethod,
    Frame,
    FrameLabel,
    LabelAction,
    LabelEvent,
    PreLabel,
    WorklistOrder,
)
from cagvlm_site.roles import SENIOR_GROUP, is_adjudicator
from inference.models import ModelVersion
from tests.annotation.labelling import label, physicians, sampled_frames
from tests.factories import CineLoopFactory, ExamFactory, ModelVersionFactory, make_prelabel

pytestmark = pytest.mark.django_db


@pytest.fixture
def frame():
    return sampled_frames(CineLoopFactory(frame_count=10))[0]


def events_of(label_row: FrameLabel) -> list[LabelEvent]:
    return list(label_row.events.order_by("created_at", "id"))


# --- one physician's label -------------------------------------------------------------------


def test_a_new_label_is_version_one_with_a_created_event(frame, physician):
    created = submit_label(frame, physician, "LCA", "better", note="proximal LAD sharp", seconds_spent=4.5)

    assert (created.laterality, created.category, created.version) == ("LCA", "better", 1)
    assert created.is_active
    [event] = events_of(created)
    assert event.action == LabelAction.CREATED
    assert event.actor == physician
    assert event.before is None
    assert event.after["laterality"] == "LCA"
    assert event.after["note"] == "proximal LAD sharp"
    assert event.after["version"] == 1


def test_submitting_the_same_label_twice_leaves_one_label_and_one_event(frame, physician):
    first = label(frame, physician, "RCA_bad", seconds_spent=3)
    second = label(frame, physician, "RCA_bad", seconds_spent=3)

    assert second.pk == first.pk
    assert second.version == 1
    assert FrameLabel.objects.filter(frame=frame, physician=physician).count() == 1
    assert LabelEvent.objects.count() == 1
    assert second.seconds_spent == 3


def test_a_change_names_the_current_version_and_records_before_and_after(frame, physician):
    first = label(frame, physician, "LCA_better", seconds_spent=2)

    changed = label(frame, physician, "LCA_bad", note="wash-out", seconds_spent=5, expected_version=first.version)

    assert changed.pk == first.pk
    assert (changed.category, changed.version, changed.note) == ("bad", 2, "wash-out")
    assert changed.seconds_spent == 7  # the running total of both visits
    event = events_of(changed)[-1]
    assert event.action == LabelAction.CHANGED
    assert event.before["category"] == "better"
    assert event.before["version"] == 1
    assert event.after["category"] == "bad"
    assert event.after["version"] == 2


def test_a_change_based_on_a_stale_version_is_refused_with_the_current_label(frame, physician):
    first = label(frame, physician, "LCA_better")
    label(frame, physician, "LCA_bad", expected_version=first.version)

    with pytest.raises(StaleLabel) as refused:
        label(frame, physician, "RCA_other", expected_version=first.version)

    assert refused.value.current.version == 2
    assert refused.value.current.category == "bad"
    assert "version 2" in str(refused.value)
    assert FrameLabel.objects.get(pk=first.pk).category == "bad"


def test_a_new_label_over_an_unseen_different_label_is_stale(frame, physician):
    label(frame, physician, "LCA_better")

    with pytest.raises(StaleLabel):
        label(frame, physician, "RCA_better", expected_version=None)


def test_a_stale_submission_of_what_is_already_stored_is_accepted_unchanged(frame, physician):
    first = label(frame, physician, "LCA_better")
    label(frame, physician, "LCA_bad", expected_version=1)

    again = label(frame, physician, "LCA_bad", expected_version=1)  # the second tab sends the same

    assert again.version == 2
    assert again.pk == first.pk


def test_a_version_for_a_label_that_does_not_exist_is_stale(frame, physician):
    with pytest.raises(StaleLabel) as refused:
        label(frame, physician, "LCA_better", expected_version=3)
    assert refused.value.current is None


@pytest.mark.parametrize(
    ("laterality", "category", "seconds", "message"),
    [
        ("LAD", "better", 1, "not a laterality"),
        ("LCA", "good", 1, "not a key-frame category"),
        ("LCA", "better", -1, "not a time spent"),
        ("LCA", "better", float("nan"), "not a time spent"),
        ("LCA", "better", "soon", "not a number"),
    ],
)
def test_invalid_values_are_refused(frame, physician, laterality, category, seconds, message):
    with pytest.raises(InvalidLabel, match=message):
        submit_label(frame, physician, laterality, category, seconds_spent=seconds)
    assert not FrameLabel.objects.exists()


def test_an_overlong_note_is_refused(frame, physician):
    with pytest.raises(InvalidLabel, match="at most 2000"):
        submit_label(frame, physician, "LCA", "better", note="x" * 2001)


def test_physicians_labels_of_one_frame_are_their_own(frame, physician, other_physician):
    mine = label(frame, physician, "LCA_better")
    theirs = label(frame, other_physician, "RCA_other")

    assert mine.pk != theirs.pk
    assert FrameLabel.objects.get(pk=mine.pk).laterality == "LCA"
    assert FrameLabel.objects.get(pk=theirs.pk).laterality == "RCA"


# --- withdrawal and never deleting ----------------------------------------------------------


def test_withdrawing_keeps_the_row_and_labelling_again_restores_it(frame, physician):
    first = label(frame, physician, "LCA_better", seconds_spent=2)

    withdrawn = withdraw_label(frame, physician, expected_version=1)
    assert withdrawn.withdrawn_at is not None
    assert withdrawn.version == 2
    # Withdrawing again changes nothing.
    assert withdraw_label(frame, physician, expected_version=2).version == 2

    restored = label(frame, physician, "RCA_bad", seconds_spent=1)

    assert restored.pk == first.pk
    assert restored.is_active
    assert (restored.laterality, restored.version, restored.seconds_spent) == ("RCA", 3, 3)
    actions = [event.action for event in events_of(restored)]
    assert actions == [LabelAction.CREATED, LabelAction.WITHDRAWN, LabelAction.RESTORED]
    assert events_of(restored)[1].after["withdrawn_at"] is not None


def test_withdrawing_needs_the_current_version_and_a_label(frame, physician, other_physician):
    label(frame, physician, "LCA_better")
    label(frame, physician, "LCA_bad", expected_version=1)

    with pytest.raises(StaleLabel):
        withdraw_label(frame, physician, expected_version=1)
    with pytest.raises(NoLabel):
        withdraw_label(frame, other_physician, expected_version=1)


def test_labels_and_events_are_never_deleted(frame, physician):
    created = label(frame, physician)
    event = created.events.get()

    with pytest.raises(PermissionDenied):
        created.delete()
    with pytest.raises(PermissionDenied):
        FrameLabel.objects.all().delete()
    with pytest.raises(PermissionDenied):
        LabelEvent.objects.all().delete()
    with pytest.raises(PermissionDenied):
        event.delete()
    event.action = LabelAction.CHANGED
    with pytest.raises(PermissionDenied):
        event.save()
    assert FrameLabel.objects.count() == 1
    assert LabelEvent.objects.get().action == LabelAction.CREATED


# --- undo ------------------------------------------------------------------------------------


def test_undo_withdraws_a_new_label(frame, physician):
    label(frame, physician, "LCA_better")

    undone = undo_last(physician)

    assert not undone.is_active
    event = events_of(undone)[-1]
    assert event.action == LabelAction.WITHDRAWN
    assert event.reverts.action == LabelAction.CREATED


def test_undo_restores_the_label_before_a_change_and_goes_back_step_by_step(frame, physician):
    label(frame, physician, "LCA_better", note="first")
    label(frame, physician, "RCA_bad", note="second", expected_version=1)
    label(frame, physician, "RCA_other", note="third", expected_version=2)

    assert undo_last(physician).class_name == "RCA_bad"
    back = undo_last(physician)
    assert (back.class_name, back.note) == ("LCA_better", "first")
    gone = undo_last(physician)
    assert not gone.is_active
    with pytest.raises(NothingToUndo):
        undo_last(physician)


def test_undo_restores_a_withdrawn_label(frame, physician):
    label(frame, physician, "LCA_bad")
    withdraw_label(frame, physician, expected_version=1)

    restored = undo_last(physician)

    assert restored.is_active
    assert restored.class_name == "LCA_bad"
    assert events_of(restored)[-1].action == LabelAction.RESTORED


def test_undo_takes_my_latest_change_across_frames_and_not_other_physicians(physician, other_physician):
    first, second = sampled_frames(CineLoopFactory(frame_count=10))
    label(first, physician, "LCA_better")
    label(second, physician, "RCA_better")
    label(second, other_physician, "RCA_bad")

    undone = undo_last(physician)

    assert undone.frame == second
    assert not undone.is_active
    assert FrameLabel.objects.get(frame=second, physician=other_physician).is_active
    assert FrameLabel.objects.get(frame=first, physician=physician).is_active


def test_nothing_to_undo(physician):
    with pytest.raises(NothingToUndo):
        undo_last(physician)


def test_undo_refuses_when_the_label_was_changed_by_an_import(frame, physician, admin_user):
    label(frame, physician, "LCA_better")
    withdraw_label(frame, physician, expected_version=1)
    record_label(frame, physician, "RCA", "bad", imported_by=admin_user)

    with pytest.raises(StaleLabel):
        undo_last(physician)


# --- final labels ----------------------------------------------------------------------------


def test_agreeing_labels_of_enough_physicians_make_the_final_label(frame, physician, other_physician):
    label(frame, physician, "LCA_better")
    assert not FinalLabel.objects.exists()  # one label of the two required

    label(frame, other_physician, "LCA_better")

    final = FinalLabel.objects.get(frame=frame)
    assert (final.class_name, final.method, final.decided_by) == ("LCA_better", FinalLabelMethod.AGREEMENT, None)
    assert "dr_other_physician" in final.note
    assert "dr_physician" in final.note
    assert not adjudication_queue().exists()


def test_disagreement_removes_an_agreement_and_queues_the_frame(frame, physician, other_physician):
    label(frame, physician, "LCA_better")
    label(frame, other_physician, "LCA_better")

    label(frame, other_physician, "LCA_bad", expected_version=1)

    assert not FinalLabel.objects.filter(frame=frame).exists()
    assert list(adjudication_queue()) == [frame]
    # Back in agreement: the final label returns.
    label(frame, physician, "LCA_bad", expected_version=1)
    assert FinalLabel.objects.get(frame=frame).class_name == "LCA_bad"
    assert not adjudication_queue().exists()


def test_withdrawing_an_agreeing_label_removes_the_final_label(frame, physician, other_physician):
    label(frame, physician, "RCA_other")
    label(frame, other_physician, "RCA_other")

    withdraw_label(frame, physician, expected_version=1)

    assert not FinalLabel.objects.exists()
    assert not adjudication_queue().exists()  # one label left: nothing disagrees


def test_the_project_sets_how_many_physicians_must_agree(frame):
    project = AnnotationProject.objects.create(name="Triple reading", labels_required=3)
    frame.loop.exam.project = project
    frame.loop.exam.save()
    first, second, third = physicians(3)

    label(frame, first, "LCA_better")
    label(frame, second, "LCA_better")
    assert not FinalLabel.objects.exists()
    label(frame, third, "LCA_better")

    assert FinalLabel.objects.get(frame=frame).method == FinalLabelMethod.AGREEMENT


def test_adjudication_decides_a_disputed_frame_and_names_who(frame, physician, other_physician, senior_physician):
    label(frame, physician, "LCA_better")
    label(frame, other_physician, "RCA_better")

    final = adjudicate(frame, senior_physician, "RCA", "better", note="right coronary, LAO view")

    assert (final.class_name, final.method, final.decided_by) == ("RCA_better", "adjudication", senior_physician)
    assert final.note == "right coronary, LAO view"
    assert not adjudication_queue().exists()
    # Labels changing later leave a person's decision alone.
    label(frame, physician, "LCA_other", expected_version=1)
    assert FinalLabel.objects.get(frame=frame).class_name == "RCA_better"
    # An adjudicator may change the decision.
    assert adjudicate(frame, senior_physician, "RCA", "bad").class_name == "RCA_bad"


def final_events(frame: Frame) -> list[tuple[str, str | None, str | None, str | None]]:
    """The frame's final-label trail, oldest first: (action, who, class before, class after)."""

    def class_of(state: dict | None) -> str | None:
        return f"{state['laterality']}_{state['category']}" if state else None

    return [
        (event.action, event.actor.username if event.actor else None, class_of(event.before), class_of(event.after))
        for event in FinalLabelEvent.objects.filter(frame=frame).order_by("created_at", "id")
    ]


def test_every_change_of_a_final_label_is_in_its_audit_trail(
    frame, physician, other_physician, senior_physician, admin_user
):
    label(frame, physician, "LCA_better")
    label(frame, other_physician, "LCA_better")  # agreement reached
    label(frame, other_physician, "LCA_bad", expected_version=1)  # and lost
    adjudicate(frame, senior_physician, "LCA", "bad", note="wash-out")
    adjudicate(frame, senior_physician, "LCA", "bad", note="wash-out")  # the same again: nothing new
    adjudicate(frame, admin_user, "LCA", "better", note="second look: fully filled")

    assert final_events(frame) == [
        ("decided", "dr_other_physician", None, "LCA_better"),
        ("cleared", "dr_other_physician", "LCA_better", None),
        ("decided", "dr_senior", None, "LCA_bad"),
        ("changed", "lab_admin", "LCA_bad", "LCA_better"),
    ]
    # The first adjudication is kept whole in the event that replaced it.
    replaced = FinalLabelEvent.objects.filter(frame=frame, action="changed").get()
    assert replaced.before | {"decided_at": None} == {
        "laterality": "LCA",
        "category": "bad",
        "method": "adjudication",
        "decided_by": "dr_senior",
        "decided_at": None,
        "note": "wash-out",
    }
    assert replaced.after["decided_by"] == "lab_admin"
    with pytest.raises(PermissionDenied):
        replaced.delete()
    with pytest.raises(PermissionDenied):
        FinalLabelEvent.objects.all().delete()
    with pytest.raises(PermissionDenied):
        replaced.save()


def test_adjudication_is_for_adjudicators_and_disputed_frames_only(frame, physician, other_physician, admin_user):
    label(frame, physician, "LCA_better")
    with pytest.raises(NotDisputed):
        adjudicate(frame, admin_user, "LCA", "better")
    label(frame, other_physician, "RCA_better")
    with pytest.raises(PermissionDenied):
        adjudicate(frame, physician, "LCA", "better")
    with pytest.raises(InvalidLabel):
        adjudicate(frame, admin_user, "LCA", "great")

    assert adjudicate(frame, admin_user, "LCA", "better").decided_by == admin_user


def test_an_imported_or_phantom_final_label_is_left_alone(frame, physician, other_physician):
    FinalLabel.objects.create(
        frame=frame,
        laterality="RCA",
        category="other",
        method=FinalLabelMethod.PHANTOM,
        decided_at=datetime.datetime.now(datetime.UTC),
    )
    label(frame, physician, "LCA_better")
    label(frame, other_physician, "LCA_better")

    assert refresh_final_label(frame).method == FinalLabelMethod.PHANTOM
    assert FinalLabel.objects.get(frame=frame).class_name == "RCA_other"


def test_the_queue_lists_only_disputed_frames_without_a_decision(physician, other_physician, admin_user):
    agreed, disputed, single, decided = sampled_frames(CineLoopFactory(frame_count=20))
    for frame_, (mine, theirs) in {
        agreed: ("LCA_bad", "LCA_bad"),
        disputed: ("LCA_bad", "LCA_other"),
        decided: ("LCA_bad", "RCA_bad"),
    }.items():
        label(frame_, physician, mine)
        label(frame_, other_physician, theirs)
    label(single, physician, "RCA_bad")
    adjudicate(decided, admin_user, "RCA", "bad")

    queue = list(adjudication_queue())

    assert queue == [disputed]
    assert queue[0].label_count == 2


# --- worklist --------------------------------------------------------------------------------


def test_worklist_has_loops_with_my_unlabelled_sampled_frames_and_progress(physician, other_physician):
    exam = ExamFactory()
    started = CineLoopFactory(exam=exam, frame_count=10, series_number=1)  # sampled: 0, 5
    done = CineLoopFactory(exam=exam, frame_count=5, series_number=2)  # sampled: 0
    untouched = CineLoopFactory(frame_count=15)  # sampled: 0, 5, 10
    label(sampled_frames(started)[0], physician)
    label(sampled_frames(done)[0], physician)
    for frame_ in sampled_frames(untouched):
        label(frame_, other_physician)  # someone else's labels are not mine

    loops = {loop.pk: loop for loop in worklist_for(physician)}

    assert set(loops) == {started.pk, untouched.pk}
    assert (loops[started.pk].labelled_count, loops[started.pk].sampled_count) == (1, 2)
    assert (loops[started.pk].exam_labelled_count, loops[started.pk].exam_sampled_count) == (2, 3)
    assert (loops[untouched.pk].labelled_count, loops[untouched.pk].sampled_count) == (0, 3)


def test_a_withdrawn_label_puts_the_frame_back_on_the_worklist(physician):
    loop = CineLoopFactory(frame_count=5)
    [frame_] = sampled_frames(loop)
    label(frame_, physician)
    assert not worklist_for(physician).exists()

    withdraw_label(frame_, physician, expected_version=1)

    assert list(worklist_for(physician)) == [loop]


def test_worklist_is_in_acquisition_order_without_pre_labels(physician):
    exam = ExamFactory()
    later = CineLoopFactory(exam=exam, acquisition_datetime=datetime.datetime(2024, 1, 1, 10, 5, tzinfo=datetime.UTC))
    earlier = CineLoopFactory(exam=exam, acquisition_datetime=datetime.datetime(2024, 1, 1, 10, 0, tzinfo=datetime.UTC))

    assert list(worklist_for(physician)) == [earlier, later]


def _acquired(exam, minute: int, **options):
    return CineLoopFactory(
        exam=exam, acquisition_datetime=datetime.datetime(2024, 1, 1, 10, minute, tzinfo=datetime.UTC), **options
    )


def _prelabel_sampled(loop, version, p: float) -> None:
    """The model puts ``p`` on LCA_better for every sampled frame: the lower ``p``, the less
    sure it is (higher entropy, smaller margin)."""
    for frame_ in sampled_frames(loop):
        make_prelabel(frame_, version, "LCA_better", p)


@pytest.fixture
def ranked_loops():
    """Four loops acquired in order first..fourth: the active model is sure of ``sure``,
    unsure of ``unsure``, has not seen ``unseen``; an inactive model was unsure of ``sure``."""
    exam = ExamFactory()
    loops = {name: _acquired(exam, minute) for minute, name in enumerate(["unseen", "sure", "middling", "unsure"])}
    active = ModelVersionFactory(is_active=True)
    _prelabel_sampled(loops["sure"], active, 0.95)
    _prelabel_sampled(loops["middling"], active, 0.6)
    _prelabel_sampled(loops["unsure"], active, 0.3)
    _prelabel_sampled(loops["sure"], ModelVersionFactory(), 0.2)  # not the active model: ignored
    return loops


@pytest.mark.parametrize("order", [WorklistOrder.ENTROPY, WorklistOrder.MARGIN])
def test_worklist_puts_the_loops_the_active_model_is_least_sure_of_first(physician, ranked_loops, order):
    AnnotationProject.default()  # a flushed database creates it
    AnnotationProject.objects.filter(is_default=True).update(worklist_order=order)

    ranked = list(worklist_for(physician))

    assert [loop.pk for loop in ranked] == [ranked_loops[name].pk for name in ["unsure", "middling", "sure", "unseen"]]
    assert ranked[-1].uncertainty is None  # no pre-labels: last, in acquisition order
    assert ranked[0].uncertainty > ranked[1].uncertainty > ranked[2].uncertainty
    if order == WorklistOrder.MARGIN:
        assert ranked[0].prelabel_margin == pytest.approx(0.3 - 0.7 / 5)
    else:
        assert ranked[0].prelabel_entropy > ranked[2].prelabel_entropy


def test_worklist_in_acquisition_order_when_the_project_says_so(physician, ranked_loops):
    project = AnnotationProject.objects.create(name="In order", worklist_order=WorklistOrder.ACQUISITION)
    Exam.objects.update(project=project)

    ranked = list(worklist_for(physician))

    assert [loop.pk for loop in ranked] == [ranked_loops[n].pk for n in ["unseen", "sure", "middling", "unsure"]]
    assert all(loop.uncertainty is None for loop in ranked)


def test_worklist_ranking_follows_the_active_model(physician, ranked_loops):
    ModelVersion.objects.update(is_active=False)
    assert [loop.pk for loop in worklist_for(physician)] == [
        ranked_loops[n].pk for n in ["unseen", "sure", "middling", "unsure"]
    ]


def test_worklist_ranking_is_one_query(physician, ranked_loops, django_assert_num_queries):
    for _ in range(5):
        _prelabel_sampled(CineLoopFactory(frame_count=20), ModelVersion.objects.get(is_active=True), 0.5)
    with django_assert_num_queries(1):
        loops = list(worklist_for(physician))
    assert len(loops) == 9


# --- roles, projects, pre-labels -------------------------------------------------------------


def test_adjudicators_are_admins_and_senior_physicians(
    physician, senior_physician, cardiologist, admin_user, roleless_user
):
    assert is_adjudicator(admin_user)
    assert is_adjudicator(senior_physician)
    assert not is_adjudicator(physician)
    assert not is_adjudicator(cardiologist)
    assert not is_adjudicator(roleless_user)
    # "senior" without the physician role makes no one an adjudicator.
    roleless_user.groups.add(Group.objects.get(name=SENIOR_GROUP))
    roleless_user.refresh_from_db()
    assert not is_adjudicator(type(roleless_user).objects.get(pk=roleless_user.pk))


def test_one_default_project_exists_blinded_with_two_readers():
    project = AnnotationProject.default()

    assert AnnotationProject.objects.filter(is_default=True).count() == 1
    assert (project.mode, project.labels_required) == (AnnotationMode.BLINDED, 2)
    assert ExamFactory().project is None  # an exam without a project belongs to the default


def test_prelabel_probabilities_are_validated(frame):
    version = ModelVersionFactory()
    good = PreLabel(
        frame=frame,
        model_version=version,
        probabilities={
            "LCA_better": 0.7,
            "LCA_bad": 0.1,
            "LCA_other": 0.05,
            "RCA_better": 0.1,
            "RCA_bad": 0.03,
            "RCA_other": 0.02,
        },
    )
    good.full_clean()
    assert good.predicted_class == "LCA_better"

    bad = PreLabel(frame=frame, model_version=version, probabilities={"LCA_better": 1.5})
    with pytest.raises(ValidationError):
        bad.full_clean()
