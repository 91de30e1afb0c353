"""Labels submitted at the same moment, from real threads with their own database
connections: run on SQLite and on PostgreSQL (DATABASE_URL) alike."""

from __future__ import annotations

import pytest

from annotation.labels import StaleLabel, adjudication_queue, submit_label, undo_last
from annotation.models import FinalLabel, FinalLabelMethod, FrameLabel, LabelAction, LabelEvent
from tests.annotation.labelling import label, sampled_frames
from tests.concurrency import at_the_same_moment
from tests.factories import CineLoopFactory

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def frame():
    return sampled_frames(CineLoopFactory(frame_count=10))[0]


def test_two_physicians_labelling_one_frame_at_once_both_keep_their_labels(frame, physician, other_physician):
    results = at_the_same_moment(
        lambda: submit_label(frame, physician, "LCA", "better", seconds_spent=3),
        lambda: submit_label(frame, other_physician, "LCA", "better", seconds_spent=4),
    )

    assert all(isinstance(result, FrameLabel) for result in results), results
    labels = FrameLabel.objects.filter(frame=frame)
    assert {(row.physician_id, row.version) for row in labels} == {(physician.pk, 1), (other_physician.pk, 1)}
    # The second to commit saw the first's label: their agreement made the final label.
    assert FinalLabel.objects.get(frame=frame).method == FinalLabelMethod.AGREEMENT


def test_two_physicians_disagreeing_at_once_put_the_frame_in_the_queue(frame, physician, other_physician):
    at_the_same_moment(
        lambda: submit_label(frame, physician, "LCA", "better"),
        lambda: submit_label(frame, other_physician, "RCA", "better"),
    )

    assert FrameLabel.objects.filter(frame=frame).count() == 2
    assert list(adjudication_queue()) == [frame]


def test_one_physician_submitting_twice_at_once_leaves_one_label(frame, physician):
    results = at_the_same_moment(
        lambda: submit_label(frame, physician, "RCA", "bad", note="motion", seconds_spent=2),
        lambda: submit_label(frame, physician, "RCA", "bad", note="motion", seconds_spent=2),
    )

    assert all(isinstance(result, FrameLabel) for result in results), results
    [stored] = FrameLabel.objects.filter(frame=frame, physician=physician)
    assert {result.pk for result in results} == {stored.pk}
    assert stored.version == 1
    assert list(LabelEvent.objects.values_list("action", flat=True)) == [LabelAction.CREATED]


def test_of_two_changes_based_on_one_version_the_second_is_refused(frame, physician):
    label(frame, physician, "LCA_better")

    results = at_the_same_moment(
        lambda: submit_label(frame, physician, "LCA", "bad", expected_version=1),
        lambda: submit_label(frame, physician, "RCA", "other", expected_version=1),
    )

    saved = [result for result in results if isinstance(result, FrameLabel)]
    refused = [result for result in results if isinstance(result, StaleLabel)]
    assert len(saved) == 1, results
    assert len(refused) == 1, results
    stored = FrameLabel.objects.get(frame=frame, physician=physician)
    assert stored.version == 2
    assert stored.class_name == saved[0].class_name
    # The refusal carries the label that won, for the page to show.
    assert refused[0].current.class_name == stored.class_name
    assert refused[0].current.version == 2
    assert LabelEvent.objects.filter(action=LabelAction.CHANGED).count() == 1


def test_two_undos_at_once_undo_two_steps(frame, physician):
    label(frame, physician, "LCA_better")
    label(frame, physician, "LCA_bad", expected_version=1)

    results = at_the_same_moment(lambda: undo_last(physician), lambda: undo_last(physician))

    assert all(isinstance(result, FrameLabel) for result in results), results
    stored = FrameLabel.objects.get(frame=frame, physician=physician)
    assert not stored.is_active  # the change was undone, then the creation
    assert LabelEvent.objects.filter(reverts__isnull=False).count() == 2
