"""The cine viewer page: who may open it, and what the page gives its script.

What the viewer does in a browser (play, step, label with the keyboard) is tested in
tests/browser/test_viewer.py.
"""

from __future__ import annotations

import json
import re
import uuid

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.models import CATEGORY_DEFINITIONS, AnnotationMode, AnnotationProject, KeyFrameCategory
from tests.annotation.labelling import label, sampled_frames
from tests.conftest import visit_as
from tests.factories import CineLoopFactory

ALL_VISITORS = ["anonymous", "no_role", "physician", "cardiologist", "admin"]
VIEWERS = {"physician", "admin"}


def viewer_path(loop) -> str:
    return reverse("annotation:viewer", kwargs={"loop_uuid": loop.uuid})


def page_config(response) -> dict:
    """The JSON the page hands to static/js/viewer.js."""
    found = re.search(r'<script id="viewer-config" type="application/json">(.*?)</script>', response.text, re.S)
    assert found, "the page carries no viewer configuration"
    return json.loads(found.group(1))


@pytest.mark.django_db
@pytest.mark.parametrize("visitor", ALL_VISITORS)
def test_viewer_access(client, users_by_role, visitor):
    loop = CineLoopFactory(frames=10)
    path = viewer_path(loop)
    response = visit_as(client, users_by_role, visitor).get(path)
    if visitor == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(f"/login/?next={path}")
    elif visitor in VIEWERS:
        assert response.status_code == 200
        assert 'id="cine"' in response.content.decode()
    else:
        assert response.status_code == 403
        assert "Access refused" in response.content.decode()


@pytest.mark.django_db
def test_unknown_loop_is_not_found(client, physician):
    client.force_login(physician)
    response = client.get(reverse("annotation:viewer", kwargs={"loop_uuid": uuid.uuid4()}))
    assert response.status_code == 404


@pytest.mark.django_db
def test_viewer_only_answers_get(client, physician):
    client.force_login(physician)
    response = client.post(viewer_path(CineLoopFactory(frames=2)))
    assert response.status_code == 405


@pytest.mark.django_db
def test_page_shows_the_label_definitions_and_one_key_per_class(client, physician):
    client.force_login(physician)
    response = client.get(viewer_path(CineLoopFactory(frames=10)))
    html = response.content.decode()
    for category in KeyFrameCategory:
        assert str(CATEGORY_DEFINITIONS[category]) in html
    keys = {
        (lat, cat): key
        for key, lat, cat in re.findall(r'data-key="(\d)" data-laterality="(\w+)" data-category="(\w+)"', html)
    }
    assert keys == {
        ("LCA", "better"): "1",
        ("LCA", "bad"): "2",
        ("LCA", "other"): "3",
        ("RCA", "better"): "4",
        ("RCA", "bad"): "5",
        ("RCA", "other"): "6",
    }
    assert 'src="/static/js/viewer.js"' in html
    assert 'type="module"' in html


@pytest.mark.django_db
def test_page_gives_the_script_the_workspace_and_label_urls(client, physician):
    loop = CineLoopFactory(frames=10)
    client.force_login(physician)
    config = page_config(client.get(viewer_path(loop)))
    workspace = reverse("api:loop-workspace", kwargs={"uuid": loop.uuid})
    assert config["urls"]["workspace"] == workspace
    assert config["can_label"] is True
    frame = loop.frames.first()
    placeholder = config["placeholder_uuid"]
    assert config["urls"]["my_label_template"].replace(placeholder, str(frame.uuid)) == reverse(
        "api:frame-my-label", kwargs={"uuid": frame.uuid}
    )
    assert config["urls"]["frame_state_template"].replace(placeholder, str(frame.uuid)) == reverse(
        "api:frame-state", kwargs={"uuid": frame.uuid}
    )
    assert config["urls"]["undo"] == reverse("api:label-undo")
    assert [(c["key"], c["laterality"], c["category"]) for c in config["classes"]][:2] == [
        ("1", "LCA", "better"),
        ("2", "LCA", "bad"),
    ]


@pytest.mark.django_db
def test_page_links_the_exam_the_worklist_and_the_next_loop(client, physician):
    loop = CineLoopFactory(frames=10)
    following = CineLoopFactory(frames=10, exam=loop.exam)
    client.force_login(physician)
    response = client.get(viewer_path(loop))
    html = response.content.decode()
    assert f'href="{loop.exam.get_absolute_url()}"' in html
    assert f'href="{reverse("annotation:worklist")}"' in html
    assert f'href="{viewer_path(following)}"' in html
    assert page_config(response)["next_loop"] == {"uuid": str(following.uuid), "url": viewer_path(following)}


@pytest.mark.django_db
def test_no_next_loop_once_the_worklist_is_done(client, physician):
    loop = CineLoopFactory(frames=10)
    for frame in sampled_frames(loop):
        label(frame, physician)
    client.force_login(physician)
    response = client.get(viewer_path(loop))
    assert page_config(response)["next_loop"] is None
    assert 'id="next-loop-link" hidden' in response.content.decode()


@pytest.mark.django_db
def test_admin_may_look_but_is_not_offered_labelling(client, admin_user):
    loop = CineLoopFactory(frames=10)
    client.force_login(admin_user)
    response = client.get(viewer_path(loop))
    html = response.content.decode()
    assert page_config(response)["can_label"] is False
    assert "class-btn" not in html
    assert "only physicians label frames" in html
    # The worklist is a physician's page: an admin goes back to the exams.
    assert f'href="{reverse("annotation:worklist")}"' not in html
    assert f'href="{reverse("annotation:exam-list")}"' in html


@pytest.mark.django_db
def test_page_never_carries_labels(client, physician, other_physician):
    """The page itself holds no label at all: the script reads the physician's own labels from
    the workspace API, which never returns anyone else's."""
    loop = CineLoopFactory(frames=10)
    label(sampled_frames(loop)[0], other_physician, "RCA_other", note="distinctive-note-of-another-physician")
    client.force_login(physician)
    html = client.get(viewer_path(loop)).content.decode()
    assert "distinctive-note-of-another-physician" not in html
    assert "RCA_other" not in html


@pytest.mark.django_db
def test_page_shows_the_project_mode(client, physician):
    loop = CineLoopFactory(frames=10)
    project = AnnotationProject.objects.create(name="Assisted study", mode=AnnotationMode.ASSISTED)
    loop.exam.project = project
    loop.exam.save()
    client.force_login(physician)
    html = client.get(viewer_path(loop)).content.decode()
    assert 'data-mode="assisted"' in html


@pytest.mark.django_db
def test_query_count_does_not_grow_with_the_frames(client, physician):
    small = CineLoopFactory(frames=10, frame_count=10)
    large = CineLoopFactory(frames=200, frame_count=200)
    for frame in sampled_frames(large)[:5]:
        label(frame, physician)
    client.force_login(physician)
    client.get(viewer_path(small))  # the session and the default project, once

    counts = []
    for loop in (small, large):
        with CaptureQueriesContext(connection) as queries:
            response = client.get(viewer_path(loop))
        assert response.status_code == 200
        counts.append(len(queries))
    assert counts[0] == counts[1]
