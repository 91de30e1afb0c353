"""The labelling REST API: access per role for every endpoint, what each endpoint does, blinded
and assisted mode, and query counts that do not grow with frames or labels."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from rest_framework.test import APIClient

from annotation.labels import adjudicate
from annotation.models import (
    AnnotationMode,
    AnnotationProject,
    CineLoop,
    Exam,
    FinalLabel,
    FrameLabel,
    LabelAction,
    LabelEvent,
    PreLabel,
)
from inference.models import ModelVersion
from tests.annotation.labelling import label, sampled_frames
from tests.factories import CineLoopFactory, ModelVersionFactory

pytestmark = pytest.mark.django_db

ROLES = ["anonymous", "no_role", "physician", "cardiologist", "admin", "senior"]
REFUSED: tuple[int, ...] = (401, 403)
PROBABILITIES = {
    "LCA_better": 0.6,
    "LCA_bad": 0.2,
    "LCA_other": 0.1,
    "RCA_better": 0.05,
    "RCA_bad": 0.03,
    "RCA_other": 0.02,
}


def client_for(user) -> APIClient:
    client = APIClient()
    if user is not None:
        client.force_login(user)
    return client


def assert_status(response, expected: int | tuple[int, ...]) -> None:
    allowed = expected if isinstance(expected, tuple) else (expected,)
    assert response.status_code in allowed, (response.status_code, getattr(response, "data", response.content))


@pytest.fixture
def visitors(users_by_role, senior_physician) -> dict[str, Any]:
    return {**users_by_role, "senior": senior_physician}


@pytest.fixture
def loop() -> CineLoop:
    return CineLoopFactory(frame_count=10)


@pytest.fixture
def disputed(loop, physician, other_physician):
    """A frame the two physicians labelled differently."""
    frame = sampled_frames(loop)[1]
    label(frame, physician, "LCA_better", note="sharp LAD")
    label(frame, other_physician, "RCA_better", note="looks right-sided")
    return frame


def state_url(frame) -> str:
    return reverse("api:frame-state", kwargs={"uuid": frame.uuid})


def my_label_url(frame) -> str:
    return reverse("api:frame-my-label", kwargs={"uuid": frame.uuid})


# --- access per role -------------------------------------------------------------------------

PHYSICIANS = {"physician", "senior"}
LABEL_READERS = {"physician", "senior", "admin"}
FINAL_READERS = {"cardiologist", "admin"}
ADJUDICATORS = {"admin", "senior"}


def _put_label(client: APIClient, frame) -> Any:
    """Label a sampled frame no one has labelled yet."""
    fresh = sampled_frames(frame.loop)[0]
    return client.put(my_label_url(fresh), {"laterality": "LCA", "category": "bad", "version": None}, format="json")


def _csv_upload() -> SimpleUploadedFile:
    return SimpleUploadedFile("labels.csv", b"frame_uuid,physician,laterality,category\n", content_type="text/csv")


ENDPOINTS: dict[str, tuple[Callable[..., Any], set[str], int | dict[str, int]]] = {
    # name: (request(client, frame), roles admitted, status for them)
    "worklist": (lambda c, f: c.get(reverse("api:worklist")), PHYSICIANS, 200),
    "workspace": (lambda c, f: c.get(reverse("api:loop-workspace", kwargs={"uuid": f.loop.uuid})), LABEL_READERS, 200),
    "frame state": (lambda c, f: c.get(state_url(f)), LABEL_READERS, 200),
    "put my label": (_put_label, PHYSICIANS, 200),
    # The physician labelled the disputed frame; the senior physician has nothing to undo.
    "undo": (lambda c, f: c.post(reverse("api:label-undo")), PHYSICIANS, {"physician": 200, "senior": 404}),
    "label list": (lambda c, f: c.get(reverse("api:label-list")), LABEL_READERS, 200),
    "final label list": (lambda c, f: c.get(reverse("api:final-label-list")), FINAL_READERS, 200),
    "export csv": (lambda c, f: c.get(reverse("api:final-label-export-csv")), FINAL_READERS, 200),
    "export json": (lambda c, f: c.get(reverse("api:final-label-export-json")), FINAL_READERS, 200),
    "import": (
        lambda c, f: c.post(reverse("api:label-import"), {"file": _csv_upload()}, format="multipart"),
        {"admin"},
        200,
    ),
    "adjudication queue": (lambda c, f: c.get(reverse("api:adjudication-queue")), ADJUDICATORS, 200),
    "adjudicate": (
        lambda c, f: c.post(
            reverse("api:frame-adjudicate", kwargs={"uuid": f.uuid}), {"laterality": "RCA", "category": "better"}
        ),
        ADJUDICATORS,
        200,
    ),
    "agreement": (lambda c, f: c.get(reverse("api:agreement")), {"admin"}, 200),
}


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_access_per_role(visitors, disputed, role, endpoint):
    request, admitted, expected = ENDPOINTS[endpoint]
    labels_before = FrameLabel.objects.count()
    final_before = FinalLabel.objects.count()

    response = request(client_for(visitors[role]), disputed)

    if role in admitted:
        assert_status(response, expected[role] if isinstance(expected, dict) else expected)
    else:
        assert_status(response, REFUSED if role == "anonymous" else 403)
        assert FrameLabel.objects.count() == labels_before
        assert FinalLabel.objects.count() == final_before
        assert b"uuid" not in response.content


@pytest.mark.parametrize("role", ROLES)
def test_only_physicians_withdraw_labels(visitors, loop, physician, role):
    frame = sampled_frames(loop)[0]
    if role == "physician":
        label(frame, physician)

    response = client_for(visitors[role]).delete(my_label_url(frame) + "?version=1")

    if role == "physician":
        assert_status(response, 200)
        assert not FrameLabel.objects.get(frame=frame).is_active
    elif role == "senior":
        assert_status(response, 404)  # a physician, but without a label of this frame
    else:
        assert_status(response, REFUSED if role == "anonymous" else 403)


@pytest.mark.parametrize("role", ["cardiologist", "admin", "no_role", "anonymous"])
def test_only_physicians_label(visitors, loop, role):
    response = _put_label(client_for(visitors[role]), sampled_frames(loop)[0])

    assert_status(response, REFUSED if role == "anonymous" else 403)
    assert not FrameLabel.objects.exists()


@pytest.mark.parametrize("method", ["get", "post", "patch"])
def test_my_label_takes_only_put_and_delete(physician, loop, method):
    response = getattr(client_for(physician), method)(my_label_url(sampled_frames(loop)[0]))
    assert_status(response, 405)


def test_unknown_frame_is_404(physician):
    import uuid

    response = client_for(physician).put(
        reverse("api:frame-my-label", kwargs={"uuid": uuid.uuid4()}), {"laterality": "LCA", "category": "bad"}
    )
    assert_status(response, 404)


# --- labelling through the API ---------------------------------------------------------------


def test_put_creates_then_changes_my_label_and_returns_the_frame_state(physician, loop):
    frame = sampled_frames(loop)[0]
    client = client_for(physician)
    body = {"laterality": "LCA", "category": "better", "note": "sharp", "seconds_spent": 4.0, "version": None}

    created = client.put(my_label_url(frame), body, format="json")
    twice = client.put(my_label_url(frame), body, format="json")
    changed = client.put(my_label_url(frame), {**body, "category": "bad", "version": 1}, format="json")

    assert_status(created, 200)
    assert created.data["uuid"] == str(frame.uuid)
    assert created.data["my_label"] == {
        "laterality": "LCA",
        "category": "better",
        "note": "sharp",
        "version": 1,
        "seconds_spent": 4.0,
    }
    assert twice.data["my_label"]["version"] == 1
    assert changed.data["my_label"]["version"] == 2
    assert changed.data["my_label"]["category"] == "bad"
    assert FrameLabel.objects.get().version == 2


def test_a_stale_put_is_409_with_the_current_state(physician, loop):
    frame = sampled_frames(loop)[0]
    label(frame, physician, "LCA_better")
    label(frame, physician, "LCA_bad", expected_version=1)

    response = client_for(physician).put(
        my_label_url(frame), {"laterality": "RCA", "category": "other", "version": 1}, format="json"
    )

    assert_status(response, 409)
    assert response.data["detail"] == (
        "This frame's label was changed elsewhere (version 2); the page shows its current state."
    )
    assert response.data["state"]["my_label"]["category"] == "bad"
    assert response.data["state"]["my_label"]["version"] == 2
    assert FrameLabel.objects.get().category == "bad"


@pytest.mark.parametrize(
    "body",
    [
        {"laterality": "LAD", "category": "better"},
        {"laterality": "LCA", "category": "great"},
        {"laterality": "LCA", "category": "better", "seconds_spent": -2},
        {"laterality": "LCA", "category": "better", "version": 0},
        {"laterality": "LCA", "category": "better", "note": "x" * 2001},
        {"category": "better"},
    ],
)
def test_invalid_labels_are_400(physician, loop, body):
    response = client_for(physician).put(my_label_url(sampled_frames(loop)[0]), body, format="json")

    assert_status(response, 400)
    assert not FrameLabel.objects.exists()


def test_delete_withdraws_with_the_version(physician, loop):
    frame = sampled_frames(loop)[0]
    label(frame, physician, "LCA_better")
    label(frame, physician, "LCA_bad", expected_version=1)
    client = client_for(physician)

    assert_status(client.delete(my_label_url(frame)), 400)
    stale = client.delete(my_label_url(frame) + "?version=1")
    assert_status(stale, 409)
    assert stale.data["state"]["my_label"]["version"] == 2
    withdrawn = client.delete(my_label_url(frame) + "?version=2")
    assert_status(withdrawn, 200)
    assert withdrawn.data["my_label"] is None
    assert FrameLabel.objects.get().withdrawn_at is not None


def test_undo_reverts_my_last_label_and_returns_that_frame(physician, loop):
    first, second = sampled_frames(loop)
    label(first, physician, "LCA_better")
    label(second, physician, "RCA_bad")
    client = client_for(physician)

    response = client.post(reverse("api:label-undo"))

    assert_status(response, 200)
    assert response.data["uuid"] == str(second.uuid)
    assert response.data["my_label"] is None
    assert_status(client.post(reverse("api:label-undo")), 200)
    nothing = client.post(reverse("api:label-undo"))
    assert_status(nothing, 404)
    assert nothing.data["detail"] == "You have no label change to undo."


def test_every_change_through_the_api_is_audited(physician, loop):
    frame = sampled_frames(loop)[0]
    client = client_for(physician)
    client.put(my_label_url(frame), {"laterality": "LCA", "category": "better"}, format="json")
    client.put(my_label_url(frame), {"laterality": "LCA", "category": "bad", "version": 1}, format="json")
    client.delete(my_label_url(frame) + "?version=2")
    client.post(reverse("api:label-undo"))

    actions = list(LabelEvent.objects.order_by("created_at", "id").values_list("action", "actor__username"))

    assert actions == [
        (LabelAction.CREATED, "dr_physician"),
        (LabelAction.CHANGED, "dr_physician"),
        (LabelAction.WITHDRAWN, "dr_physician"),
        (LabelAction.RESTORED, "dr_physician"),
    ]


# --- the workspace, blinded and assisted -----------------------------------------------------


def test_workspace_has_the_loop_every_frame_and_my_labels(physician, other_physician, loop):
    first = sampled_frames(loop)[0]
    label(first, physician, "RCA_other", note="catheter only", seconds_spent=2.5)
    label(first, other_physician, "LCA_better")
    following = CineLoopFactory(exam=loop.exam, frame_count=5, series_number=loop.series_number + 1)

    response = client_for(physician).get(reverse("api:loop-workspace", kwargs={"uuid": loop.uuid}))

    assert_status(response, 200)
    data = response.data
    assert set(data) == {"loop", "mode", "frames", "next_loop"}
    assert data["loop"] == {
        "uuid": str(loop.uuid),
        "exam": str(loop.exam.uuid),
        "projection_label": "RAO 30 / CRA 20",
        "primary_angle": -30.0,
        "secondary_angle": 20.0,
        "frame_count": 10,
        "frame_time_ms": 66.7,
        "frame_timing_source": "FrameTime",
    }
    assert data["mode"] == "blinded"
    assert [frame["index"] for frame in data["frames"]] == list(range(10))
    zero = data["frames"][0]
    assert set(zero) == {
        "uuid",
        "index",
        "time_offset_ms",
        "is_sampled",
        "image_url",
        "my_label",
        "disputed",
        "prelabel",
    }
    assert zero["my_label"] == {
        "laterality": "RCA",
        "category": "other",
        "note": "catheter only",
        "version": 1,
        "seconds_spent": 2.5,
    }
    assert zero["is_sampled"] is True
    assert data["frames"][1]["is_sampled"] is False
    assert zero["image_url"].startswith("http://testserver/media/frames/")
    # The other physician's label and the dispute stay hidden from a plain physician.
    assert zero["disputed"] is False
    assert "LCA" not in str(data["frames"])
    assert data["next_loop"]["uuid"] == str(following.uuid)
    assert data["next_loop"]["url"].endswith(reverse("annotation:viewer", kwargs={"loop_uuid": following.uuid}))


def test_a_physician_cannot_read_another_physicians_label_anywhere(physician, other_physician, disputed):
    client = client_for(physician)
    mine = FrameLabel.objects.get(frame=disputed, physician=physician)

    state = client.get(state_url(disputed)).data
    workspace = client.get(reverse("api:loop-workspace", kwargs={"uuid": disputed.loop.uuid})).data
    listed = client.get(reverse("api:label-list")).data
    asked = client.get(reverse("api:label-list") + "?physician=dr_other_physician")

    assert state["my_label"]["laterality"] == "LCA"
    assert state["disputed"] is False
    assert "looks right-sided" not in str(workspace)
    assert [row["uuid"] for row in listed["results"]] == [str(mine.uuid)]
    assert_status(asked, 403)
    assert "looks right-sided" not in asked.content.decode()


@pytest.mark.parametrize("role", ["admin", "senior"])
def test_adjudicators_see_which_frames_are_disputed(visitors, disputed, role):
    response = client_for(visitors[role]).get(reverse("api:loop-workspace", kwargs={"uuid": disputed.loop.uuid}))

    flags = {frame["index"]: frame["disputed"] for frame in response.data["frames"]}
    assert flags[disputed.index] is True
    assert sum(flags.values()) == 1


def test_prelabels_are_shown_in_assisted_mode_only(physician, loop):
    frame = sampled_frames(loop)[0]
    old = ModelVersionFactory(version=1)
    newer = ModelVersionFactory(version=2, architecture="convnext_nano")
    PreLabel.objects.create(frame=frame, model_version=old, probabilities={**PROBABILITIES, "LCA_better": 0.1})
    PreLabel.objects.create(frame=frame, model_version=newer, probabilities=PROBABILITIES)
    client = client_for(physician)
    url = reverse("api:loop-workspace", kwargs={"uuid": loop.uuid})

    blinded = client.get(url).data
    project = AnnotationProject.objects.create(name="Assisted study", mode=AnnotationMode.ASSISTED)
    Exam.objects.filter(pk=loop.exam_id).update(project=project)
    assisted = client.get(url).data

    assert blinded["mode"] == "blinded"
    assert all(frame_["prelabel"] is None for frame_ in blinded["frames"])
    assert assisted["mode"] == "assisted"
    prelabel = assisted["frames"][0]["prelabel"]
    assert prelabel["model_version"] == "convnext_nano v2"  # the newest
    assert prelabel["model_version_uuid"] == str(newer.uuid)
    assert prelabel["predicted_class"] == "LCA_better"
    assert prelabel["probabilities"] == PROBABILITIES
    assert assisted["frames"][1]["prelabel"] is None
    assert client.get(state_url(frame)).data["prelabel"]["model_version"] == "convnext_nano v2"

    # Once a version is active, its pre-label is the one shown, however old.
    ModelVersion.objects.filter(pk=old.pk).update(is_active=True)
    assert client.get(state_url(frame)).data["prelabel"]["model_version"] == "convnext_atto v1"


# --- lists, final labels, export -------------------------------------------------------------


def test_admins_list_everyone_s_labels_with_filters(admin_user, physician, other_physician, disputed):
    other_exam_frame = sampled_frames(CineLoopFactory(frame_count=5))[0]
    label(other_exam_frame, physician, "LCA_other")
    client = client_for(admin_user)

    everyone = client.get(reverse("api:label-list")).data
    theirs = client.get(reverse("api:label-list") + "?physician=dr_other_physician").data
    in_exam = client.get(reverse("api:label-list") + f"?exam={disputed.loop.exam.uuid}").data
    in_loop = client.get(reverse("api:label-list") + f"?loop={other_exam_frame.loop.uuid}").data

    assert everyone["count"] == 3
    assert [row["physician"] for row in theirs["results"]] == ["dr_other_physician"]
    assert theirs["results"][0]["label_class"] == "RCA_better"
    assert theirs["results"][0]["frame"] == str(disputed.uuid)
    assert in_exam["count"] == 2
    assert in_loop["count"] == 1
    assert_status(client.get(reverse("api:label-list") + "?exam=nope"), 400)


def test_final_labels_list_how_each_was_reached(cardiologist, admin_user, physician, other_physician, disputed, loop):
    agreed = sampled_frames(loop)[0]
    label(agreed, physician, "LCA_better")
    label(agreed, other_physician, "LCA_better")
    adjudicate(disputed, admin_user, "RCA", "better", note="RCA in LAO")

    response = client_for(cardiologist).get(reverse("api:final-label-list"))
    by_method = client_for(cardiologist).get(reverse("api:final-label-list") + "?method=adjudication")

    rows = {row["frame"]: row for row in response.data["results"]}
    assert rows[str(agreed.uuid)]["method"] == "agreement"
    assert rows[str(agreed.uuid)]["decided_by"] is None
    assert rows[str(disputed.uuid)] | {"decided_at": None} == {
        "frame": str(disputed.uuid),
        "frame_index": disputed.index,
        "loop": str(loop.uuid),
        "exam": str(loop.exam.uuid),
        "laterality": "RCA",
        "category": "better",
        "label_class": "RCA_better",
        "method": "adjudication",
        "decided_by": "lab_admin",
        "decided_at": None,
        "note": "RCA in LAO",
    }
    assert [row["method"] for row in by_method.data["results"]] == ["adjudication"]


def test_export_csv_and_json(admin_user, physician, other_physician, loop):
    frame = sampled_frames(loop)[0]
    label(frame, physician, "RCA_bad")
    label(frame, other_physician, "RCA_bad")
    client = client_for(admin_user)

    as_csv = client.get(reverse("api:final-label-export-csv"))
    as_json = client.get(reverse("api:final-label-export-json"))

    assert as_csv["Content-Type"].startswith("text/csv")
    assert "attachment" in as_csv["Content-Disposition"]
    [row] = list(csv.DictReader(io.StringIO(as_csv.content.decode())))
    assert (row["frame_uuid"], row["loop_uuid"], row["frame_index"]) == (str(frame.uuid), str(loop.uuid), "0")
    assert (row["laterality"], row["category"], row["method"]) == ("RCA", "bad", "agreement")
    assert as_json["Content-Type"].startswith("application/json")
    [item] = as_json.json()["final_labels"]
    assert item["frame_uuid"] == str(frame.uuid)
    assert item["class"] == "RCA_bad"


def test_import_through_the_api_reports_rows(admin_user, physician, loop):
    first, second = sampled_frames(loop)
    payload = (
        "frame_uuid,physician,laterality,category,note\n"
        f"{first.uuid},dr_physician,LCA,better,from the old lab system\n"
        f"{second.uuid},dr_physician,LXA,better,\n"
    ).encode()
    client = client_for(admin_user)

    dry = client.post(
        reverse("api:label-import"),
        {"file": SimpleUploadedFile("old.csv", payload), "dry_run": "true"},
        format="multipart",
    )
    assert_status(dry, 422)
    assert dry.data["dry_run"] is True
    assert not FrameLabel.objects.exists()

    real = client.post(
        reverse("api:label-import"), {"file": SimpleUploadedFile("old.csv", payload)}, format="multipart"
    )

    assert_status(real, 422)
    assert (real.data["created"], real.data["rows"]) == (1, 2)
    assert real.data["errors"] == [{"row": 3, "error": "'LXA' is not a laterality; use one of LCA, RCA."}]
    assert FrameLabel.objects.get().note == "from the old lab system"
    unreadable = client.post(
        reverse("api:label-import"), {"file": SimpleUploadedFile("x.json", b"{oops")}, format="multipart"
    )
    assert_status(unreadable, 400)
    assert_status(client.post(reverse("api:label-import"), {}, format="multipart"), 400)


# --- adjudication and agreement --------------------------------------------------------------


def test_adjudication_queue_shows_every_label_side_by_side(senior_physician, disputed):
    response = client_for(senior_physician).get(reverse("api:adjudication-queue"))

    [row] = response.data["results"]
    assert row["uuid"] == str(disputed.uuid)
    assert [(item["physician"], item["laterality"], item["note"]) for item in row["labels"]] == [
        ("dr_other_physician", "RCA", "looks right-sided"),
        ("dr_physician", "LCA", "sharp LAD"),
    ]
    assert row["decide_url"].endswith(reverse("annotation:adjudication-decide", kwargs={"frame_uuid": disputed.uuid}))


def test_adjudicating_through_the_api(senior_physician, disputed, loop):
    client = client_for(senior_physician)
    url = reverse("api:frame-adjudicate", kwargs={"uuid": disputed.uuid})

    assert_status(client.post(url, {"laterality": "RCA", "category": "perfect"}), 400)
    decided = client.post(url, {"laterality": "RCA", "category": "better", "note": "RCA ostium"})
    not_disputed = client.post(
        reverse("api:frame-adjudicate", kwargs={"uuid": sampled_frames(loop)[0].uuid}),
        {"laterality": "RCA", "category": "better"},
    )

    assert_status(decided, 200)
    assert (decided.data["method"], decided.data["decided_by"]) == ("adjudication", "dr_senior")
    assert FinalLabel.objects.get(frame=disputed).decided_by == senior_physician
    assert_status(not_disputed, 409)
    assert not client.get(reverse("api:adjudication-queue")).data["results"]


def test_agreement_endpoint(admin_user, physician, other_physician, loop):
    for frame, (mine, theirs) in zip(
        sampled_frames(loop), [("LCA_better", "LCA_better"), ("RCA_bad", "RCA_bad")], strict=True
    ):
        label(frame, physician, mine)
        label(frame, other_physician, theirs)
    client = client_for(admin_user)

    overall = client.get(reverse("api:agreement")).data
    one_exam = client.get(reverse("api:agreement") + f"?exam={loop.exam.uuid}").data

    laterality = overall["dimensions"]["laterality"]
    assert laterality["cohen_kappa"][0]["kappa"] == pytest.approx(1.0)
    assert laterality["krippendorff_alpha"]["alpha"] == pytest.approx(1.0)
    assert overall["per_exam"][0]["exam"] == str(loop.exam.uuid)
    assert one_exam["labels"] == 4
    assert_status(client.get(reverse("api:agreement") + "?exam=00000000-0000-0000-0000-000000000000"), 404)


# --- queries do not grow with frames or labels -----------------------------------------------


def _labelled_loop(frames: int, readers, *, prelabels: bool = False) -> CineLoop:
    """A loop whose sampled frames every reader labelled, the first two disagreeing."""
    loop = CineLoopFactory(frame_count=frames)
    version = ModelVersionFactory() if prelabels else None
    for position, frame in enumerate(sampled_frames(loop)):
        for reader_position, reader in enumerate(readers):
            six_class = "RCA_bad" if reader_position == 1 and position % 2 else "LCA_better"
            label(frame, reader, six_class, note=f"note {position}")
        if prelabels:
            PreLabel.objects.create(frame=frame, model_version=version, probabilities=PROBABILITIES)
    return loop


def _count_queries(client: APIClient, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert_status(response, 200)
    return len(queries)


@pytest.mark.parametrize("role", ["physician", "admin", "senior"])
@pytest.mark.parametrize("mode", [AnnotationMode.BLINDED, AnnotationMode.ASSISTED])
def test_workspace_queries_do_not_grow_with_frames(
    visitors, physician, other_physician, role, mode, django_assert_max_num_queries
):
    project = AnnotationProject.objects.create(name=f"{mode} study", mode=mode)
    client = client_for(visitors[role])
    small = _labelled_loop(10, [physician, other_physician], prelabels=True)
    large = _labelled_loop(200, [physician, other_physician], prelabels=True)
    for loop in (small, large):
        loop.exam.project = project
        loop.exam.save()
    budget = _count_queries(client, reverse("api:loop-workspace", kwargs={"uuid": small.uuid}))

    with django_assert_max_num_queries(budget):
        response = client.get(reverse("api:loop-workspace", kwargs={"uuid": large.uuid}))

    assert len(response.data["frames"]) == 200


@pytest.mark.parametrize(
    ("role", "url_name"),
    [
        ("physician", "api:worklist"),
        ("physician", "api:label-list"),
        ("admin", "api:label-list"),
        ("admin", "api:final-label-list"),
        ("admin", "api:final-label-export-csv"),
        ("admin", "api:final-label-export-json"),
        ("admin", "api:adjudication-queue"),
        ("senior", "api:adjudication-queue"),
        ("admin", "api:agreement"),
    ],
)
def test_list_queries_do_not_grow_with_frames_and_labels(
    visitors, physician, other_physician, role, url_name, django_assert_max_num_queries
):
    client = client_for(visitors[role])
    readers = [physician, other_physician]
    small = _labelled_loop(10, readers)
    CineLoopFactory(exam=small.exam, frame_count=10)  # unlabelled: on the worklist
    budget = _count_queries(client, reverse(url_name))
    large = _labelled_loop(200, readers)
    CineLoopFactory.create_batch(3, exam=large.exam, frame_count=200)

    with django_assert_max_num_queries(budget):
        response = client.get(reverse(url_name))

    assert response.status_code == 200
    assert FinalLabel.objects.count() > 20  # the agreed frames of the large loop


def test_frame_state_queries_are_constant(physician, other_physician, django_assert_max_num_queries):
    client = client_for(physician)
    small = sampled_frames(_labelled_loop(10, [physician, other_physician]))[0]
    budget = _count_queries(client, state_url(small))
    large = sampled_frames(_labelled_loop(200, [physician, other_physician]))[-1]

    with django_assert_max_num_queries(budget):
        client.get(state_url(large))
