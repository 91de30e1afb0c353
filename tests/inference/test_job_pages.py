"""Job pages: every visitor for each page and endpoint, what the list and a job's page show,
cancel and resume from the page, and the state JSON the pages poll."""

from __future__ import annotations

import json
import re
import uuid
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from inference.jobs import run_job_here, start_job
from inference.models import Job, JobKind, JobStatus
from tests.conftest import visit_as
from tests.factories import JobFactory, ModelVersionFactory
from tests.inference.jobs_support import TRAINING_KEY, register_step_runners

pytestmark = pytest.mark.django_db

VISITORS = ["anonymous", "no_role", "physician", "cardiologist", "admin"]


@pytest.fixture
def step_runners(job_runners):
    register_step_runners()
    return job_runners


@pytest.fixture
def running_job(admin_user):
    now = timezone.now()
    return JobFactory(
        kind=JobKind.TRAIN_KEYFRAME,
        status=JobStatus.RUNNING,
        exclusive_key=TRAINING_KEY,
        progress=0.42,
        step="epoch 5 of 12",
        log_tail="epoch 4: val_loss 0.61\nepoch 5: training",
        metrics={"val_loss": 0.6125, "confusion": [[1, 0], [0, 1]]},
        parameters={"steps": 12, "fail_at": None},
        created_by=admin_user,
        started_at=now - timedelta(minutes=3),
        heartbeat_at=now,
        worker="gpu-1:311",
    )


def assert_access(response, visitor: str, path: str) -> None:
    if visitor == "anonymous":
        assert response.status_code == 302
        assert response["Location"].startswith(f"/login/?next={path}")
    elif visitor == "admin":
        assert response.status_code == 200, response.content[:500]
    else:
        assert response.status_code == 403
        assert "Access refused" in response.content.decode()


PAGES = {
    "list": lambda job: reverse("inference:job-list"),
    "list state": lambda job: reverse("inference:job-list-state"),
    "detail": lambda job: reverse("inference:job-detail", kwargs={"job_uuid": job.uuid}),
    "state": lambda job: reverse("inference:job-state", kwargs={"job_uuid": job.uuid}),
}


@pytest.mark.parametrize("visitor", VISITORS)
@pytest.mark.parametrize("page", list(PAGES))
def test_job_pages_are_for_admins(client, users_by_role, running_job, visitor, page):
    path = PAGES[page](running_job)

    response = visit_as(client, users_by_role, visitor).get(path)

    assert_access(response, visitor, path)
    if visitor != "admin":
        assert "epoch 5 of 12" not in response.content.decode()


@pytest.mark.parametrize("visitor", VISITORS)
def test_cancelling_is_for_admins(client, users_by_role, running_job, visitor):
    path = reverse("inference:job-cancel", kwargs={"job_uuid": running_job.uuid})

    response = visit_as(client, users_by_role, visitor).post(path)

    running_job.refresh_from_db()
    if visitor == "admin":
        assert response.status_code == 302
        assert response["Location"] == running_job.get_absolute_url()
        assert running_job.cancel_requested_at is not None
    else:
        assert response.status_code in (302, 403)
        assert running_job.cancel_requested_at is None


@pytest.mark.parametrize("visitor", VISITORS)
def test_resuming_is_for_admins(client, users_by_role, step_runners, visitor):
    failed = JobFactory(kind=JobKind.TRAIN_KEYFRAME, status=JobStatus.FAILED, parameters={"steps": 4})
    path = reverse("inference:job-resume", kwargs={"job_uuid": failed.uuid})

    response = visit_as(client, users_by_role, visitor).post(path)

    resumed = Job.objects.filter(resumed_from=failed).first()
    if visitor == "admin":
        assert resumed is not None
        assert response.status_code == 302
        assert response["Location"] == resumed.get_absolute_url()
        assert resumed.created_by == users_by_role["admin"]
    else:
        assert response.status_code in (302, 403)
        assert resumed is None


@pytest.mark.parametrize("action", ["job-cancel", "job-resume"])
def test_cancel_and_resume_take_only_post(client, admin_user, running_job, action):
    client.force_login(admin_user)
    assert client.get(reverse(f"inference:{action}", kwargs={"job_uuid": running_job.uuid})).status_code == 405


@pytest.mark.parametrize("name", ["job-detail", "job-state", "job-cancel", "job-resume"])
def test_an_unknown_job_is_404(client, admin_user, name):
    client.force_login(admin_user)
    path = reverse(f"inference:{name}", kwargs={"job_uuid": uuid.uuid4()})
    response = client.post(path) if name in {"job-cancel", "job-resume"} else client.get(path)
    assert response.status_code == 404


# --- the list ---------------------------------------------------------------------------------


def test_the_list_shows_jobs_newest_first_with_progress_and_links(client, admin_user, running_job):
    old = JobFactory(kind=JobKind.PRELABEL, status=JobStatus.SUCCEEDED, progress=1.0, step="Finished")
    Job.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=1))
    client.force_login(admin_user)

    page = client.get(reverse("inference:job-list")).content.decode()

    assert page.index(str(running_job.uuid)) < page.index(str(old.uuid))
    assert f'href="{running_job.get_absolute_url()}"' in page
    assert '<progress max="100" value="42"' in page
    assert "epoch 5 of 12" in page
    assert "Train the key-frame CNN" in page
    assert 'href="/jobs/"' in page  # the admin menu links here
    assert json.loads(_config(page)) == {"socket_path": "/ws/jobs/", "state_url": "/jobs/state.json"}
    assert "js/jobs.js" in page


def _config(page: str) -> str:
    return re.search(r'<script id="jobs-config" type="application/json">(.*?)</script>', page).group(1)


def test_the_list_filters_by_kind_and_status(client, admin_user, running_job):
    failed = JobFactory(kind=JobKind.PRELABEL, status=JobStatus.FAILED)
    queued = JobFactory(kind=JobKind.PRELABEL, status=JobStatus.QUEUED)
    client.force_login(admin_user)

    by_kind = client.get(reverse("inference:job-list"), {"kind": "prelabel"}).content.decode()
    by_status = client.get(reverse("inference:job-list"), {"status": "failed"}).content.decode()
    nonsense = client.get(reverse("inference:job-list"), {"status": "exploded"}).content.decode()

    assert str(failed.uuid) in by_kind
    assert str(queued.uuid) in by_kind
    assert str(running_job.uuid) not in by_kind
    assert str(failed.uuid) in by_status
    assert str(queued.uuid) not in by_status
    assert all(str(job.uuid) in nonsense for job in (failed, queued, running_job))


def test_the_list_pages_and_answers_htmx_with_the_table(client, admin_user):
    jobs = [JobFactory(kind=JobKind.PRELABEL, status=JobStatus.SUCCEEDED) for _ in range(27)]
    client.force_login(admin_user)

    first = client.get(reverse("inference:job-list"), {"kind": "prelabel"}).content.decode()
    second = client.get(
        reverse("inference:job-list"), {"kind": "prelabel", "page": 2}, headers={"HX-Request": "true"}
    ).content.decode()

    assert "Page 1 of 2" in first
    assert "?kind=prelabel&amp;page=2" in first
    assert second.lstrip().startswith('<div id="job-table">')
    shown = [job for job in jobs if str(job.uuid) in first + second]
    assert len(shown) == 27


def test_visiting_the_list_fails_the_jobs_of_dead_workers(client, admin_user, running_job):
    Job.objects.filter(pk=running_job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    client.force_login(admin_user)

    page = client.get(reverse("inference:job-list")).content.decode()

    running_job.refresh_from_db()
    assert running_job.status == JobStatus.FAILED
    assert 'data-job-status="failed">Failed</span>' in page


def test_the_list_state_has_the_jobs_of_the_page_without_log_or_metrics(client, admin_user, running_job):
    other = JobFactory(kind=JobKind.PRELABEL, status=JobStatus.QUEUED)
    client.force_login(admin_user)

    data = client.get(reverse("inference:job-list-state"), {"kind": "train_keyframe"}).json()

    [state] = data["jobs"]
    assert state["uuid"] == str(running_job.uuid)
    assert (state["status"], state["percent"], state["step"]) == ("running", 42, "epoch 5 of 12")
    assert "log_tail" not in state
    assert "metrics" not in state
    assert str(other.uuid) not in json.dumps(data)


# --- a job's page -----------------------------------------------------------------------------


def test_a_running_jobs_page_shows_progress_parameters_metrics_log_and_a_cancel_button(client, admin_user, running_job):
    client.force_login(admin_user)

    page = client.get(running_job.get_absolute_url()).content.decode()

    assert '<progress max="100" value="42"' in page
    assert "epoch 5 of 12" in page
    assert "gpu-1:311" in page
    assert "3 min 0" in page  # duration so far
    assert '<th scope="row">steps</th><td><code>12</code>' in page
    assert "0.6125" in page
    assert "[[1, 0], [0, 1]]" in page
    assert "epoch 4: val_loss 0.61\nepoch 5: training" in page
    cancel = reverse("inference:job-cancel", kwargs={"job_uuid": running_job.uuid})
    assert f'action="{cancel}" data-job-cancel>' in page  # shown
    assert "data-job-resume hidden" in page
    config = json.loads(_config(page))
    assert config == {
        "job": str(running_job.uuid),
        "socket_path": f"/ws/jobs/{running_job.uuid}/",
        "state_url": f"/jobs/{running_job.uuid}/state.json",
    }


def test_a_finished_training_jobs_page_links_the_model_it_produced(client, admin_user, step_runners):
    job = run_job_here(start_job(JobKind.TRAIN_KEYFRAME, {"steps": 2}, admin_user))
    version = ModelVersionFactory(training_job=job)
    client.force_login(admin_user)

    page = client.get(job.get_absolute_url()).content.decode()
    state = client.get(reverse("inference:job-state", kwargs={"job_uuid": job.uuid})).json()

    assert f'<a href="{version.get_absolute_url()}">{version}</a>' in page
    assert state["model_versions"] == [{"label": str(version), "url": version.get_absolute_url()}]
    assert "data-job-cancel hidden" in page


def test_cancelling_from_the_page_cancels_a_queued_job(client, admin_user, step_runners):
    job = start_job(JobKind.PRELABEL, {}, admin_user)
    client.force_login(admin_user)

    client.post(reverse("inference:job-cancel", kwargs={"job_uuid": job.uuid}))
    page = client.get(job.get_absolute_url()).content.decode()

    job.refresh_from_db()
    assert job.status == JobStatus.CANCELLED
    assert 'data-job-status="cancelled">Cancelled</span>' in page
    assert "Cancelled by lab_admin before it started." in page


def test_a_failed_jobs_page_shows_the_error_and_offers_resume(client, admin_user, step_runners):
    job = run_job_here(start_job(JobKind.TRAIN_KEYFRAME, {"steps": 4, "fail_at": 1}, admin_user))
    client.force_login(admin_user)

    page = client.get(job.get_absolute_url()).content.decode()

    assert "the worker lost its GPU at step 1" in page
    resume = reverse("inference:job-resume", kwargs={"job_uuid": job.uuid})
    assert f'action="{resume}" data-job-resume>' in page


def test_resuming_while_another_training_job_runs_says_which_one(client, admin_user, step_runners, running_job):
    failed = JobFactory(kind=JobKind.TRAIN_KEYFRAME, status=JobStatus.FAILED, parameters={"steps": 4})
    client.force_login(admin_user)

    response = client.post(reverse("inference:job-resume", kwargs={"job_uuid": failed.uuid}))

    assert response.status_code == 409
    page = response.content.decode()
    assert f"A key-frame CNN training job is already queued or running: {running_job.uuid}" in page
    assert f'<a href="{running_job.get_absolute_url()}">Open that job</a>' in page
    assert not Job.objects.filter(resumed_from=failed).exists()


def test_resuming_a_succeeded_job_is_refused_with_the_reason(client, admin_user, step_runners):
    job = run_job_here(start_job(JobKind.PRELABEL, {}, admin_user))
    client.force_login(admin_user)

    response = client.post(reverse("inference:job-resume", kwargs={"job_uuid": job.uuid}))

    assert response.status_code == 409
    assert "Only failed or cancelled jobs can be resumed; this one is succeeded." in response.content.decode()


def test_a_resumed_jobs_page_links_both_ways(client, admin_user, step_runners):
    failed = run_job_here(start_job(JobKind.PRELABEL, {"steps": 3, "fail_at": 1}, admin_user))
    resumed = start_job(JobKind.PRELABEL, failed.parameters, admin_user, resumed_from=failed)
    client.force_login(admin_user)

    before = client.get(failed.get_absolute_url()).content.decode()
    after = client.get(resumed.get_absolute_url()).content.decode()

    assert f'Resumed as job <a href="{resumed.get_absolute_url()}">' in before
    assert "data-job-resume hidden" in before  # resumed once already
    assert f'Resumes job <a href="{failed.get_absolute_url()}">' in after


# --- the state JSON ---------------------------------------------------------------------------


def test_the_state_endpoint_returns_what_the_page_shows(client, admin_user, running_job):
    client.force_login(admin_user)

    state = client.get(reverse("inference:job-state", kwargs={"job_uuid": running_job.uuid})).json()

    assert state["uuid"] == str(running_job.uuid)
    assert state["url"] == running_job.get_absolute_url()
    assert (state["kind"], state["status"], state["status_label"]) == ("train_keyframe", "running", "Running")
    assert (state["progress"], state["percent"], state["step"]) == (0.42, 42, "epoch 5 of 12")
    assert state["log_tail"] == "epoch 4: val_loss 0.61\nepoch 5: training"
    assert state["metrics"] == {"val_loss": 0.6125, "confusion": [[1, 0], [0, 1]]}
    assert state["is_active"] is True
    assert state["cancel_requested"] is False
    assert state["can_resume"] is False
    assert state["model_versions"] == []
    assert state["worker"] == "gpu-1:311"
    # Nothing about who started it beyond what the page shows, and no parameters.
    assert "created_by" not in state
    assert "parameters" not in state


def test_the_state_endpoint_fails_a_dead_workers_job(client, admin_user, running_job):
    Job.objects.filter(pk=running_job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
    client.force_login(admin_user)

    state = client.get(reverse("inference:job-state", kwargs={"job_uuid": running_job.uuid})).json()

    assert state["status"] == "failed"
    assert "stopped sending heartbeats" in state["error"]
