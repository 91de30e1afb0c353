"""The key-frame section of the exam page and its two POST endpoints, for every role."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from inference.keyframes import add_key_frame, pick_key_frames, remove_key_frame
from inference.models import KeyFrame, KeyFrameOrigin, KeyFrameOverride, OverrideAction
from tests.conftest import visit_as
from tests.factories import CineLoopFactory, ExamFactory, ModelVersionFactory, make_prelabel

pytestmark = pytest.mark.django_db

EDITORS = {"physician", "admin"}


@pytest.fixture
def exam_with_key_frames():
    """An exam of one 20-frame loop whose model picked frames 3 and 12 (LCA)."""
    exam = ExamFactory()
    loop = CineLoopFactory(exam=exam, frame_count=20, positioner_primary_angle=-30.0, positioner_secondary_angle=20.0)
    version = ModelVersionFactory(is_active=True, architecture="convnext_atto", version=3)
    for frame in loop.frames.all():
        p = {3: 0.9, 12: 0.7}.get(frame.index)
        make_prelabel(frame, version, "LCA_better" if p else "LCA_other", p or 0.9)
    pick_key_frames(exam, version)
    return exam


def key_frame_url(name: str, exam) -> str:
    return reverse(f"inference:key-frame-{name}", kwargs={"exam_uuid": exam.uuid})


def frame_of(exam, index: int):
    return exam.loops.get().frames.get(index=index)


@pytest.mark.parametrize("visitor", ["anonymous", "no_role", "physician", "cardiologist", "admin"])
def test_exam_page_shows_the_key_frames_to_every_role_and_the_controls_to_editors(
    client, users_by_role, visitor, exam_with_key_frames
):
    response = visit_as(client, users_by_role, visitor).get(exam_with_key_frames.get_absolute_url())

    if visitor == "anonymous":
        assert response.status_code == 302
        assert "/login/" in response["Location"]
        return
    if visitor == "no_role":
        assert response.status_code == 403
        return
    assert response.status_code == 200
    page = response.content.decode()
    assert 'id="key-frames"' in page
    assert "convnext_atto v3" in page
    assert "0.900" in page
    assert "0.700" in page
    frame_3 = frame_of(exam_with_key_frames, 3)
    assert frame_3.image.url in page
    editable = visitor in EDITORS
    assert (key_frame_url("remove", exam_with_key_frames) in page) is editable
    assert (key_frame_url("add", exam_with_key_frames) in page) is editable
    assert ("you see them read-only" in page) is (not editable)


@pytest.mark.parametrize("name", ["add", "remove"])
@pytest.mark.parametrize("visitor", ["anonymous", "no_role", "cardiologist", "physician", "admin"])
def test_key_frame_changes_are_for_physicians_and_admins(client, users_by_role, visitor, name, exam_with_key_frames):
    exam = exam_with_key_frames
    loop = exam.loops.get()
    data = (
        {"loop": str(loop.uuid), "index": "7", "laterality": "LCA", "note": "nice filling"}
        if name == "add"
        else {"frame": str(frame_of(exam, 3).uuid), "note": "catheter in the way"}
    )

    response = visit_as(client, users_by_role, visitor).post(key_frame_url(name, exam), data)

    if visitor == "anonymous":
        assert response.status_code == 302
        assert "/login/" in response["Location"]
    elif visitor in ("no_role", "cardiologist"):
        assert response.status_code == 403
    else:
        assert response.status_code == 302
        assert response["Location"] == exam.get_absolute_url() + "#key-frames"
    changed = KeyFrameOverride.objects.exists()
    assert changed is (visitor in EDITORS)
    if visitor in EDITORS:
        override = KeyFrameOverride.objects.get()
        assert override.by == users_by_role[visitor]
        if name == "add":
            assert override.action == OverrideAction.ADDED
            assert override.note == "nice filling"
            assert KeyFrame.objects.get(frame=frame_of(exam, 7)).origin == KeyFrameOrigin.PHYSICIAN
        else:
            assert override.action == OverrideAction.REMOVED
            assert override.note == "catheter in the way"
            assert KeyFrame.objects.get(frame=frame_of(exam, 3)).excluded_at is not None
    assert KeyFrame.objects.filter(exam=exam).count() == (3 if name == "add" and visitor in EDITORS else 2)


@pytest.mark.parametrize("name", ["add", "remove"])
def test_key_frame_endpoints_take_post_only(client, physician, name, exam_with_key_frames):
    client.force_login(physician)
    assert client.get(key_frame_url(name, exam_with_key_frames)).status_code == 405


def test_the_page_lists_corrections_and_removed_frames(client, physician, admin_user, exam_with_key_frames):
    exam = exam_with_key_frames
    remove_key_frame(exam, frame_of(exam, 3), physician, "foreshortened")
    add_key_frame(exam, frame_of(exam, 15), admin_user, "shows the distal RCA", laterality="RCA")
    client.force_login(physician)

    page = client.get(exam.get_absolute_url()).content.decode()

    assert "Removed by physicians" in page
    assert "Restore" in page
    assert "foreshortened" in page
    assert "shows the distal RCA" in page
    assert "Added by a physician" in page
    assert "2 in use (1 LCA, 1 RCA)" in page


def test_errors_come_back_on_the_exam_page(client, physician, exam_with_key_frames):
    exam = exam_with_key_frames
    client.force_login(physician)
    loop = exam.loops.get()

    already = client.post(key_frame_url("add", exam), {"loop": str(loop.uuid), "index": "3"}, follow=True)
    beyond = client.post(key_frame_url("add", exam), {"loop": str(loop.uuid), "index": "99"}, follow=True)
    other_exam_frame = CineLoopFactory(frame_count=3).frames.get(index=0)
    foreign = client.post(key_frame_url("remove", exam), {"frame": str(other_exam_frame.uuid)}, follow=True)

    assert "Frame 3 is already a key frame of this exam." in already.content.decode()
    assert "This loop of the exam has no frame 99." in beyond.content.decode()
    assert "not one of this exam" in foreign.content.decode()
    assert not KeyFrameOverride.objects.exists()


def test_exam_page_queries_do_not_grow_with_key_frames(client, physician, admin_user, django_assert_max_num_queries):
    client.force_login(physician)
    version = ModelVersionFactory(is_active=True)

    def exam_with(loops: int, frames: int):
        exam = ExamFactory()
        for _ in range(loops):
            for frame in CineLoopFactory(exam=exam, frame_count=frames).frames.all():
                make_prelabel(frame, version, "LCA_better" if frame.index % 6 == 0 else "LCA_other", 0.8)
        pick_key_frames(exam, version)
        rows = list(KeyFrame.objects.filter(exam=exam))
        remove_key_frame(exam, rows[0].frame, admin_user, "no")
        return exam

    small = exam_with(1, 6)
    with CaptureQueriesContext(connection) as baseline:
        client.get(small.get_absolute_url())
    large = exam_with(6, 30)
    with django_assert_max_num_queries(len(baseline)):
        response = client.get(large.get_absolute_url())
    assert len(response.context["key_frames"].in_use) == 2  # the per-exam cap (3) less one removed
