"""Labelling pages: every visitor for each page, what each page shows and does, and query
counts that do not grow with frames, labels or events."""

from __future__ import annotations

import datetime
import uuid

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from annotation.labels import adjudicate, withdraw_label
from annotation.models import AnnotationMode, AnnotationProject, FinalLabel, FinalLabelEvent, FrameLabel, LabelEvent
from tests.annotation.labelling import label, sampled_frames
from tests.conftest import visit_as
from tests.factories import CineLoopFactory, ModelVersionFactory, make_prelabel

pytestmark = pytest.mark.django_db

VISITORS = ["anonymous", "no_role", "physician", "cardiologist", "admin", "senior"]


@pytest.fixture
def visitors(users_by_role, senior_physician):
    return {**users_by_role, "senior": senior_physician}


@pytest.fixture
def loop():
    return CineLoopFactory(frame_count=10)


@pytest.fixture
def disputed(loop, physician, other_physician):
    frame = sampled_frames(loop)[1]
    label(frame, physician, "LCA_better", note="sharp LAD", seconds_spent=3.5)
    label(frame, other_physician, "RCA_better", note="looks right-sided", seconds_spent=7.5)
    return frame


def assert_access(response, visitor: str, allowed: set[str], path: str) -> None:
    if visitor == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(f"/login/?next={path}")
    elif visitor in allowed:
        assert response.status_code == 200, response.content[:500]
    else:
        assert response.status_code == 403
        assert "Access refused" in response.content.decode()


PAGES = {
    "worklist": (lambda f: reverse("annotation:worklist"), {"physician", "senior"}),
    "viewer": (
        lambda f: reverse("annotation:viewer", kwargs={"loop_uuid": f.loop.uuid}),
        {"physician", "senior", "admin"},
    ),
    "adjudication queue": (lambda f: reverse("annotation:adjudication"), {"admin", "senior"}),
    "adjudication decision": (
        lambda f: reverse("annotation:adjudication-decide", kwargs={"frame_uuid": f.uuid}),
        {"admin", "senior"},
    ),
    "agreement": (lambda f: reverse("annotation:agreement"), {"admin"}),
    "confusion matrix": (
        lambda f: reverse("annotation:agreement-confusion") + "?a=dr_physician&b=dr_other_physician&dimension=class",
        {"admin"},
    ),
    "audit": (lambda f: reverse("annotation:audit"), {"admin"}),
    "label data": (lambda f: reverse("annotation:label-data"), {"admin"}),
}  # fmt: skip


@pytest.mark.parametrize("visitor", VISITORS)
@pytest.mark.parametrize("page", list(PAGES))
def test_page_access(client, visitors, disputed, visitor, page):
    url_of, allowed = PAGES[page]
    path = url_of(disputed)

    response = visit_as(client, visitors, visitor).get(path)

    assert_access(response, visitor, allowed, path.split("?")[0])
    if visitor not in allowed:
        assert "looks right-sided" not in response.content.decode()


@pytest.mark.parametrize("visitor", VISITORS)
def test_deciding_is_for_adjudicators(client, visitors, disputed, visitor):
    path = reverse("annotation:adjudication-decide", kwargs={"frame_uuid": disputed.uuid})

    response = visit_as(client, visitors, visitor).post(path, {"laterality": "RCA", "category": "better"})

    decided = FinalLabel.objects.filter(frame=disputed).exists()
    if visitor in {"admin", "senior"}:
        assert response.status_code == 302
        assert decided
    else:
        assert response.status_code in (302, 403)
        assert not decided


@pytest.mark.parametrize("visitor", VISITORS)
def test_posting_to_label_data_is_for_admins(client, visitors, visitor):
    project = AnnotationProject.default()
    path = reverse("annotation:label-data")

    response = visit_as(client, visitors, visitor).post(
        path,
        {
            "action": "project",
            "project": project.uuid,
            "mode": "assisted",
            "labels_required": 3,
            "worklist_order": "margin",
        },
    )

    project.refresh_from_db()
    if visitor == "admin":
        assert response.status_code == 302
        assert (project.mode, project.labels_required, project.worklist_order) == ("assisted", 3, "margin")
    else:
        assert response.status_code in (302, 403)
        assert (project.mode, project.labels_required, project.worklist_order) == ("blinded", 2, "entropy")


@pytest.mark.parametrize("visitor", VISITORS)
def test_creating_projects_and_moving_exams_is_for_admins(client, visitors, visitor, loop):
    path = reverse("annotation:label-data")
    client = visit_as(client, visitors, visitor)

    created = client.post(
        path,
        {
            "action": "new-project",
            "new-name": "Triple reading",
            "new-mode": "blinded",
            "new-labels_required": 3,
            "new-worklist_order": "entropy",
        },
    )
    project = AnnotationProject.objects.filter(name="Triple reading").first()
    default = AnnotationProject.default().uuid
    moved = client.post(path, {"action": "assign", "exams": [loop.exam.uuid], "project": default})

    if visitor == "admin":
        assert created.status_code == moved.status_code == 302
        assert project is not None
        assert project.labels_required == 3
    else:
        assert created.status_code in (302, 403)
        assert moved.status_code in (302, 403)
        assert project is None
        loop.exam.refresh_from_db()
        assert loop.exam.project is None


def test_unknown_loop_and_frame_are_404(client, admin_user):
    import uuid

    client.force_login(admin_user)
    assert client.get(reverse("annotation:viewer", kwargs={"loop_uuid": uuid.uuid4()})).status_code == 404
    assert client.get(reverse("annotation:adjudication-decide", kwargs={"frame_uuid": uuid.uuid4()})).status_code == 404


# --- worklist and viewer ---------------------------------------------------------------------


def test_worklist_lists_my_loops_with_progress_and_links_to_the_viewer(client, physician, loop):
    label(sampled_frames(loop)[0], physician)
    done = CineLoopFactory(frame_count=5)
    label(sampled_frames(done)[0], physician)
    client.force_login(physician)

    page = client.get(reverse("annotation:worklist")).content.decode()

    assert reverse("annotation:viewer", kwargs={"loop_uuid": loop.uuid}) in page
    assert reverse("annotation:viewer", kwargs={"loop_uuid": done.uuid}) not in page
    assert "1 of 2" in page
    assert "Vessels fully opacified and sharp" in page
    fragment = client.get(reverse("annotation:worklist"), headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="worklist-table">')


def test_worklist_shows_the_model_uncertainty_once_loops_are_ranked_by_it(client, physician, loop):
    client.force_login(physician)
    assert "Model uncertainty" not in client.get(reverse("annotation:worklist")).content.decode()
    unsure = CineLoopFactory(frame_count=10)
    version = ModelVersionFactory(is_active=True)
    for frame in sampled_frames(unsure):
        make_prelabel(frame, version, "RCA_bad", 0.4)

    page = client.get(reverse("annotation:worklist")).content.decode()

    assert "Model uncertainty" in page
    assert page.index(str(unsure.uuid)) < page.index(str(loop.uuid))  # the uncertain loop first
    assert "entropy 1.64" in page  # 0.4 and five times 0.12, in nats
    assert "—" in page  # the loop without pre-labels


def test_worklist_when_everything_is_labelled(client, physician):
    client.force_login(physician)
    assert "Nothing left to label" in client.get(reverse("annotation:worklist")).content.decode()


def test_the_viewer_page_shows_no_other_physician_s_label(client, physician, disputed, loop):
    # The viewer page itself is the cine viewer's; it must not carry another physician's label.
    client.force_login(physician)

    page = client.get(reverse("annotation:viewer", kwargs={"loop_uuid": loop.uuid})).content.decode()

    assert "looks right-sided" not in page
    assert "dr_other_physician" not in page


# --- adjudication ----------------------------------------------------------------------------


def test_queue_lists_disputed_frames_with_each_label(client, senior_physician, disputed):
    client.force_login(senior_physician)

    page = client.get(reverse("annotation:adjudication")).content.decode()

    assert "1 frame to decide" in page
    assert "dr_physician" in page
    assert "dr_other_physician" in page
    assert reverse("annotation:adjudication-decide", kwargs={"frame_uuid": disputed.uuid}) in page


def test_decision_page_shows_labels_side_by_side_and_neighbours(client, senior_physician, disputed):
    client.force_login(senior_physician)

    response = client.get(reverse("annotation:adjudication-decide", kwargs={"frame_uuid": disputed.uuid}))

    page = response.content.decode()
    for text in ("dr_physician", "dr_other_physician", "sharp LAD", "looks right-sided", "3.5 s", "7.5 s"):
        assert text in page
    neighbours = [frame.index for frame in response.context["neighbours"]]
    assert neighbours == [3, 4, 5, 6, 7]
    assert disputed.loop.frames.get(index=4).image.url in page


def test_deciding_stores_the_final_label_and_goes_to_the_next_disputed_frame(
    client, senior_physician, physician, other_physician, disputed, loop
):
    following = sampled_frames(loop)[0]
    label(following, physician, "LCA_bad")
    label(following, other_physician, "LCA_other")
    client.force_login(senior_physician)

    response = client.post(
        reverse("annotation:adjudication-decide", kwargs={"frame_uuid": disputed.uuid}),
        {"laterality": "RCA", "category": "better", "note": "RCA in LAO"},
    )

    assert response["Location"] == reverse("annotation:adjudication-decide", kwargs={"frame_uuid": following.uuid})
    final = FinalLabel.objects.get(frame=disputed)
    assert (final.class_name, final.method, final.decided_by, final.note) == (
        "RCA_better",
        "adjudication",
        senior_physician,
        "RCA in LAO",
    )
    last = client.post(response["Location"], {"laterality": "LCA", "category": "bad"})
    assert last["Location"] == reverse("annotation:adjudication")


def test_deciding_needs_a_complete_decision_on_a_disputed_frame(client, admin_user, physician, disputed, loop):
    client.force_login(admin_user)
    url = reverse("annotation:adjudication-decide", kwargs={"frame_uuid": disputed.uuid})

    incomplete = client.post(url, {"laterality": "RCA"})
    agreed_frame = sampled_frames(loop)[0]
    label(agreed_frame, physician, "LCA_bad")
    not_disputed = client.post(
        reverse("annotation:adjudication-decide", kwargs={"frame_uuid": agreed_frame.uuid}),
        {"laterality": "RCA", "category": "bad"},
    )

    assert incomplete.status_code == 200
    assert "This field is required" in incomplete.content.decode()
    assert not_disputed.status_code == 409
    assert "nothing to adjudicate" in not_disputed.content.decode()
    assert not FinalLabel.objects.exists()


# --- agreement -------------------------------------------------------------------------------


def test_agreement_page_shows_the_statistics_and_the_matrices(client, admin_user, physician, other_physician, loop):
    for frame, six_class in zip(sampled_frames(loop), ["LCA_better", "RCA_bad"], strict=True):
        label(frame, physician, six_class)
        label(frame, other_physician, six_class)
    client.force_login(admin_user)

    page = client.get(reverse("annotation:agreement")).content.decode()
    one_exam = client.get(reverse("annotation:agreement") + f"?exam={loop.exam.uuid}")

    assert "Fleiss' kappa" in page
    assert "1.000" in page
    # Pairs in alphabetical order, one matrix per pair and dimension.
    for dimension in ("laterality", "category", "class"):
        assert f"?a=dr_other_physician&amp;b=dr_physician&amp;dimension={dimension}" in page
    assert str(loop.exam.uuid)[:8] in page
    assert one_exam.context["exam"] == loop.exam
    png = client.get(
        reverse("annotation:agreement-confusion") + "?a=dr_physician&b=dr_other_physician&dimension=category"
    )
    assert png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG")
    bad = client.get(reverse("annotation:agreement-confusion") + "?a=dr_physician&b=x&dimension=colour")
    assert bad.status_code == 400


# --- audit -----------------------------------------------------------------------------------


def assert_row_names_the_frame(page: str, frame) -> None:
    """An audit row links the frame's exam and names its loop and frame number."""
    exam = frame.loop.exam
    assert f'<a href="{exam.get_absolute_url()}"><code>{str(exam.uuid)[:8]}</code></a>' in page
    assert f"<td>{frame.loop.projection_label}, {frame.index}</td>" in page


def test_audit_page_lists_events_with_before_and_after_and_filters(
    client, admin_user, physician, other_physician, loop
):
    first, second = sampled_frames(loop)
    elsewhere = sampled_frames(CineLoopFactory(frame_count=5))[0]
    label(first, physician, "LCA_better", note="first look")
    label(first, physician, "RCA_bad", expected_version=1)
    withdraw_label(first, physician, expected_version=2)
    label(second, other_physician, "LCA_other")
    label(elsewhere, other_physician, "LCA_other")
    LabelEvent.objects.filter(frame=elsewhere).update(created_at=datetime.datetime(2020, 5, 1, 12, tzinfo=datetime.UTC))
    client.force_login(admin_user)
    url = reverse("annotation:audit")

    everything = client.get(url)
    by_physician = client.get(url, {"physician": "dr_physician"})
    by_exam = client.get(url, {"exam": str(elsewhere.loop.exam.uuid)})
    by_date = client.get(url, {"date_from": "2020-05-01", "date_to": "2020-05-01"})
    before_2021 = client.get(url, {"date_to": "2020-12-31"})
    backwards = client.get(url, {"date_from": "2021-01-01", "date_to": "2020-01-01"})

    assert everything.context["page"].paginator.count == 5
    page = everything.content.decode()
    for text in ("Created", "Changed", "Withdrawn", "LCA · better", "RCA · bad", "first look"):
        assert text in page
    assert_row_names_the_frame(page, elsewhere)
    assert [event.action for event in by_physician.context["page"]] == ["withdrawn", "changed", "created"]
    assert [event.frame for event in by_exam.context["page"]] == [elsewhere]
    assert [event.frame for event in by_date.context["page"]] == [elsewhere]
    assert before_2021.context["page"].paginator.count == 1
    assert backwards.context["page"].paginator.count == 0
    assert "The start date is after the end date" in backwards.content.decode()
    fragment = client.get(url, {"physician": "dr_physician"}, headers={"HX-Request": "true"}).content.decode()
    assert fragment.lstrip().startswith('<div id="audit-table">')


def test_audit_page_lists_the_final_labels_trail(client, admin_user, physician, other_physician, loop):
    frame = sampled_frames(loop)[0]
    label(frame, physician, "LCA_better")
    label(frame, other_physician, "RCA_better")
    adjudicate(frame, admin_user, "RCA", "better", note="right coronary")
    adjudicate(frame, admin_user, "RCA", "bad", note="on second look, wash-out")
    client.force_login(admin_user)
    url = reverse("annotation:audit")

    final = client.get(url, {"trail": "final"})
    by_admin = client.get(url, {"trail": "final", "physician": "lab_admin"})
    by_physician = client.get(url, {"trail": "final", "physician": "dr_physician"})

    assert [event.action for event in final.context["page"]] == ["changed", "decided"]
    page = final.content.decode()
    for text in ("final-label events", "RCA · better", "RCA · bad", "adjudication by lab_admin", "wash-out"):
        assert text in page
    assert_row_names_the_frame(page, frame)
    assert by_admin.context["page"].paginator.count == 2
    assert by_physician.context["page"].paginator.count == 0
    # The physicians' trail is the default and is unaffected.
    assert client.get(url).context["page"].paginator.count == 2


def test_audit_page_pages_by_fifty_keeping_filters(client, admin_user, physician):
    loop = CineLoopFactory(frame_count=130)  # 26 sampled frames, 2 events each
    for frame in sampled_frames(loop):
        label(frame, physician, "LCA_better")
        label(frame, physician, "LCA_bad", expected_version=1)
    client.force_login(admin_user)

    first = client.get(reverse("annotation:audit"), {"physician": "dr_physician"})

    assert len(first.context["page"].object_list) == 50
    assert "physician=dr_physician&amp;page=2" in first.content.decode()
    second = client.get(reverse("annotation:audit"), {"physician": "dr_physician", "page": 2})
    assert len(second.context["page"].object_list) == 2


# --- import, export and projects -------------------------------------------------------------


def test_label_data_page_imports_with_a_report(client, admin_user, physician, loop):
    frame = sampled_frames(loop)[0]
    payload = f"frame_uuid,physician,laterality,category\n{frame.uuid},dr_physician,RCA,bad\n,dr_physician,RCA,bad\n"
    client.force_login(admin_user)
    url = reverse("annotation:label-data")

    page = client.get(url).content.decode()
    dry = client.post(
        url, {"action": "import", "file": SimpleUploadedFile("old.csv", payload.encode()), "dry_run": "on"}
    )
    real = client.post(url, {"action": "import", "file": SimpleUploadedFile("old.csv", payload.encode())})
    broken = client.post(url, {"action": "import", "file": SimpleUploadedFile("old.json", b"{nope")})

    assert reverse("api:final-label-export-csv") in page
    assert reverse("api:final-label-export-json") in page
    assert "Dry run, nothing saved." in dry.content.decode()
    assert "Name the frame by frame_uuid" in dry.content.decode()
    assert "1 labels were created" in real.content.decode()
    assert FrameLabel.objects.get().class_name == "RCA_bad"
    assert "not valid JSON" in broken.content.decode()
    assert client.post(url, {"action": "explode"}).status_code == 400


def test_label_data_page_refuses_bad_project_settings(client, admin_user):
    project = AnnotationProject.default()
    client.force_login(admin_user)

    response = client.post(
        reverse("annotation:label-data"),
        {
            "action": "project",
            "project": project.uuid,
            "mode": AnnotationMode.ASSISTED,
            "labels_required": 0,
            "worklist_order": "entropy",
        },
    )

    assert response.status_code == 200
    assert "greater than or equal to 1" in response.content.decode()
    project.refresh_from_db()
    assert project.labels_required == 2


def test_moving_exams_between_projects_applies_their_agreement_rule(
    client, admin_user, physician, other_physician, loop
):
    frame = sampled_frames(loop)[0]
    label(frame, physician, "LCA_better")
    label(frame, other_physician, "LCA_better")  # two agree: final in the default project
    triple = AnnotationProject.objects.create(name="Triple reading", labels_required=3)
    client.force_login(admin_user)
    url = reverse("annotation:label-data")

    page = client.get(url).content.decode()
    moved = client.post(url, {"action": "assign", "exams": [loop.exam.uuid], "project": triple.uuid}, follow=True)

    assert f'value="{loop.exam.uuid}"' in page
    assert "Triple reading" in page
    assert "1 exam moved to Triple reading." in moved.content.decode()
    loop.exam.refresh_from_db()
    assert loop.exam.project == triple
    assert not FinalLabel.objects.filter(frame=frame).exists()  # two of three: not final any more
    cleared = FinalLabelEvent.objects.get(frame=frame, action="cleared")
    assert cleared.actor == admin_user
    # Back to the default project: the two agreeing labels are final again.
    client.post(url, {"action": "assign", "exams": [loop.exam.uuid], "project": AnnotationProject.default().uuid})
    assert FinalLabel.objects.get(frame=frame).class_name == "LCA_better"
    # Nothing chosen, or a project that does not exist: a clear error, nothing moves.
    nothing = client.post(url, {"action": "assign", "project": triple.uuid})
    nowhere = client.post(url, {"action": "assign", "exams": [loop.exam.uuid], "project": uuid.uuid4()})
    assert nothing.status_code == nowhere.status_code == 400
    assert "Choose at least one exam." in nothing.content.decode()
    assert "That project does not exist" in nowhere.content.decode()
    loop.exam.refresh_from_db()
    assert loop.exam.project == AnnotationProject.default()


def test_changing_the_labels_needed_rederives_final_labels(client, admin_user, physician, loop):
    frame = sampled_frames(loop)[0]
    label(frame, physician, "RCA_bad")
    project = AnnotationProject.default()
    client.force_login(admin_user)

    client.post(
        reverse("annotation:label-data"),
        {
            "action": "project",
            "project": project.uuid,
            "mode": "blinded",
            "labels_required": 1,
            "worklist_order": "entropy",
        },
    )

    final = FinalLabel.objects.get(frame=frame)
    assert (final.class_name, final.method) == ("RCA_bad", "agreement")
    assert FinalLabelEvent.objects.get(frame=frame).actor == admin_user


def test_a_new_project_needs_a_unique_name(client, admin_user):
    client.force_login(admin_user)
    form = {"action": "new-project", "new-mode": "blinded", "new-labels_required": 2, "new-worklist_order": "entropy"}

    response = client.post(reverse("annotation:label-data"), {**form, "new-name": AnnotationProject.default().name})

    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert AnnotationProject.objects.count() == 1


# --- home page and navigation ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("visitor", "shown", "hidden"),
    [
        ("physician", ["/label/"], ["/label/adjudication/", "/label/agreement/", "/label/audit/"]),
        ("senior", ["/label/", "/label/adjudication/"], ["/label/agreement/"]),
        ("cardiologist", [], ["/label/", "/label/adjudication/", "/label/agreement/"]),
        ("admin", ["/label/adjudication/", "/label/agreement/", "/label/audit/", "/label/data/"], ['href="/label/"']),
    ],
)
def test_home_and_navigation_link_the_pages_of_each_role(client, visitors, disputed, visitor, shown, hidden):
    page = visit_as(client, visitors, visitor).get("/").content.decode()

    for link in shown:
        assert f'href="{link}"' in page
    for link in hidden:
        assert (link if link.startswith("href") else f'href="{link}"') not in page
    if visitor in {"senior", "admin"}:
        assert "await" in page


# --- queries do not grow ---------------------------------------------------------------------


def _labelled_loop(frames: int, readers) -> object:
    loop = CineLoopFactory(frame_count=frames)
    for position, frame in enumerate(sampled_frames(loop)):
        for reader_position, reader in enumerate(readers):
            six_class = "RCA_bad" if reader_position == 1 and position % 2 else "LCA_better"
            label(frame, reader, six_class)
    return loop


def _queries(client, url: str) -> int:
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200
    return len(queries)


@pytest.mark.parametrize(
    ("visitor", "page"),
    [
        ("physician", "worklist"),
        ("physician", "viewer"),
        ("admin", "viewer"),
        ("senior", "adjudication queue"),
        ("senior", "adjudication decision"),
        ("admin", "agreement"),
        ("admin", "audit"),
        ("admin", "label data"),
    ],
)
def test_page_queries_do_not_grow_with_frames_and_labels(
    client, visitors, physician, other_physician, visitor, page, django_assert_max_num_queries
):
    url_of, _ = PAGES[page]
    visit_as(client, visitors, visitor)
    readers = [physician, other_physician]
    small = _labelled_loop(10, readers)
    CineLoopFactory(exam=small.exam, frame_count=10)
    budget = _queries(client, url_of(sampled_frames(small)[1]))
    large = _labelled_loop(200, readers)
    CineLoopFactory.create_batch(3, exam=large.exam, frame_count=200)

    url = url_of(sampled_frames(large)[-1])

    with django_assert_max_num_queries(budget):
        response = client.get(url)

    assert response.status_code == 200


@pytest.mark.parametrize("model", ["annotationproject", "framelabel", "labelevent", "finallabel"])
def test_django_admin_lists_the_labelling_models(client, disputed, model):
    from django.contrib.auth.models import User

    client.force_login(User.objects.create_superuser("root", password="pw-root"))

    response = client.get(f"/django-admin/annotation/{model}/")

    assert response.status_code == 200
    if model != "annotationproject":
        # Read-only: labels change only through annotation.labels.
        assert f"/django-admin/annotation/{model}/add/" not in response.content.decode()
