"""The job system: start, run, fail, cancel, resume, one training job at a time, and a killed
worker's job failed by the heartbeat timeout (a real process, killed with SIGKILL)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from pydantic import BaseModel, ValidationError

from inference import jobs
from inference.jobs import (
    JobConflict,
    JobContext,
    JobNotResumable,
    cancel_job,
    reap_stale_jobs,
    register_runner,
    resume_job,
    run_job_here,
    start_job,
)
from inference.models import Job, JobKind, JobStatus
from inference.tasks import run_job
from tests.concurrency import at_the_same_moment
from tests.conftest import REPO_ROOT
from tests.factories import JobFactory
from tests.inference.jobs_support import TRAINING_KEY, StepParameters, register_step_runners, step_runner

WORKER = f"{socket.gethostname()}:{os.getpid()}"
PROCESS_TIMEOUT_S = 60


@pytest.fixture
def step_runners(job_runners):
    register_step_runners()
    return job_runners


def runner_for_test(kind: JobKind, runner: Callable[[JobContext], Any], **options: Any) -> None:
    register_runner(kind, StepParameters, replace=True, **options)(runner)


# --- start and run ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_start_job_stores_validated_parameters_and_queues_the_task_after_commit(
    step_runners, admin_user, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        job = start_job(JobKind.PRELABEL, {"steps": 4}, admin_user)
        # Nothing is queued before the commit: a worker must find the row.
        assert not DBTaskResult.objects.exists()

    assert len(callbacks) == 1
    job.refresh_from_db()
    assert (job.status, job.progress, job.created_by) == (JobStatus.QUEUED, 0.0, admin_user)
    assert job.parameters == {"steps": 4, "fail_at": None}
    assert job.exclusive_key is None
    task = DBTaskResult.objects.get()
    assert str(task.id) == job.task_result_id
    assert task.task_path == "inference.tasks.run_job"
    assert task.args_kwargs == {"args": [str(job.uuid)], "kwargs": {}}


@pytest.mark.django_db
def test_the_task_runs_the_job_to_success_with_progress_log_and_metrics(step_runners, admin_user):
    job = start_job(JobKind.PRELABEL, StepParameters(steps=3), admin_user)

    assert run_job.call(str(job.uuid)) == JobStatus.SUCCEEDED

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert (job.progress, job.step, job.error) == (1.0, "Finished", "")
    assert job.metrics == {"steps": 3, "resumed_at_step": 0, "checkpoint_dir": str(jobs_dir(job))}
    assert job.log_tail.splitlines() == ["starting at step 0", "step 1 done", "step 2 done", "step 3 done"]
    assert job.worker == WORKER
    assert job.started_at <= job.heartbeat_at <= job.finished_at


def jobs_dir(job: Job):
    from django.conf import settings

    return settings.VAR_DIR / "jobs" / str(job.uuid)


@pytest.mark.django_db
def test_run_job_here_reports_each_progress_call_to_the_caller(step_runners):
    job = start_job(JobKind.PRELABEL, {"steps": 4}, None)
    seen: list[tuple[float, str]] = []

    run_job_here(job, on_progress=lambda current: seen.append((current.progress, current.step)))

    assert job.status == JobStatus.SUCCEEDED  # the caller's instance is refreshed
    assert job.created_by is None
    # Each report and log line reaches the caller (a progress bar), unthrottled.
    assert len(seen) >= 4 + 5
    assert list(dict.fromkeys(entry for entry in seen if entry[1].startswith("step"))) == [
        (0.0, "step 1 of 4"),
        (0.25, "step 2 of 4"),
        (0.5, "step 3 of 4"),
        (0.75, "step 4 of 4"),
    ]


@pytest.mark.django_db
def test_progress_is_written_at_most_twice_a_second_but_the_final_report_always(job_runners, monkeypatch):
    pushes: list[float] = []
    monkeypatch.setattr(jobs, "push_job_update", lambda job: pushes.append(job.progress))
    stored: list[float] = []

    def many_reports(ctx: JobContext) -> dict:
        for i in range(200):
            ctx.progress(i / 200, "counting")
        ctx.progress(1.0, "counted")
        stored.append(Job.objects.get(pk=ctx.job.pk).progress)
        return {}

    runner_for_test(JobKind.PRELABEL, many_reports)
    job = start_job(JobKind.PRELABEL, {}, None)

    run_job_here(job)

    assert stored == [1.0]
    # Claim, first report, final report and the outcome; a slow machine may add one or two.
    assert len(pushes) < 10, pushes
    assert job.status == JobStatus.SUCCEEDED


@pytest.mark.django_db
def test_metrics_from_numpy_and_nan_are_stored_as_json(job_runners):
    def numpy_metrics(ctx: JobContext) -> dict:
        ctx.progress(0.5, "evaluating", metrics={"val_loss": np.float32(0.25)})
        assert ctx.job.metrics == {"val_loss": 0.25}
        return {"macro_f1": np.float64(0.875), "ece": float("nan"), "confusion": np.array([[3, 1], [0, 4]])}

    runner_for_test(JobKind.PRELABEL, numpy_metrics)
    job = run_job_here(start_job(JobKind.PRELABEL, {}, None))

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert job.metrics == {"macro_f1": 0.875, "ece": None, "confusion": [[3, 1], [0, 4]]}


@pytest.mark.django_db
def test_invalid_parameters_are_refused_before_a_job_exists(step_runners, admin_user):
    with pytest.raises(ValidationError):
        start_job(JobKind.PRELABEL, {"steps": 0}, admin_user)
    with pytest.raises(ValidationError):
        start_job(JobKind.TRAIN_KEYFRAME, {"steps": 2, "learning_rate": 1}, admin_user)

    class OtherParameters(BaseModel):
        steps: str = "x"

    with pytest.raises(ValidationError):
        start_job(JobKind.PRELABEL, OtherParameters(), admin_user)
    assert not Job.objects.exists()


@pytest.mark.django_db
def test_a_kind_without_a_runner_is_refused(job_runners):
    with pytest.raises(ImproperlyConfigured, match="No runner"):
        start_job(JobKind.PRELABEL, {}, None)


def test_a_second_runner_for_one_kind_needs_replace(job_runners):
    register_runner(JobKind.PRELABEL, StepParameters)(step_runner)
    register_runner(JobKind.PRELABEL, StepParameters)(step_runner)  # the same runner again: fine

    def other(ctx: JobContext) -> dict:
        return {}

    with pytest.raises(ImproperlyConfigured, match="already registered"):
        register_runner(JobKind.PRELABEL, StepParameters)(other)
    register_runner(JobKind.PRELABEL, StepParameters, replace=True)(other)
    assert jobs.runner_for(JobKind.PRELABEL).runner is other


@pytest.mark.django_db
def test_a_channel_layer_that_fails_does_not_fail_the_job(step_runners, monkeypatch):
    def broken_layer() -> None:
        raise ConnectionError("redis is down")

    monkeypatch.setattr(jobs, "get_channel_layer", broken_layer)

    job = run_job_here(start_job(JobKind.PRELABEL, {"steps": 2}, None))

    assert job.status == JobStatus.SUCCEEDED


# --- failures ---------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failing_runner_fails_the_job_with_its_message_and_the_end_of_the_traceback(step_runners):
    job = run_job_here(start_job(JobKind.TRAIN_KEYFRAME, {"steps": 5, "fail_at": 2}, None))

    assert job.status == JobStatus.FAILED
    assert job.error == "the worker lost its GPU at step 2"
    assert job.step == "step 2 of 5"  # where it was when it failed
    assert job.progress == pytest.approx(0.2)
    log = job.log_tail.splitlines()
    assert log[:3] == ["starting at step 0", "step 1 done", "step 2 done"]
    assert log[-1] == "RuntimeError: the worker lost its GPU at step 2"
    assert any("step_runner" in line for line in log)
    assert job.finished_at is not None
    # The training key is free again: a new training job starts.
    assert start_job(JobKind.TRAIN_KEYFRAME, {}, None).status == JobStatus.QUEUED


# --- one training job at a time -------------------------------------------------------------


@pytest.mark.django_db
def test_a_second_training_job_is_refused_while_one_is_active(step_runners, admin_user):
    first = start_job(JobKind.TRAIN_KEYFRAME, {"steps": 2}, admin_user)

    with pytest.raises(JobConflict) as refused:
        start_job(JobKind.TRAIN_KEYFRAME, {"steps": 9}, admin_user)

    assert str(refused.value) == f"A key-frame CNN training job is already queued or running: {first.uuid}"
    assert refused.value.holder == first
    assert Job.objects.filter(kind=JobKind.TRAIN_KEYFRAME).count() == 1
    # Jobs without the key run side by side.
    start_job(JobKind.PRELABEL, {}, admin_user)
    start_job(JobKind.PRELABEL, {}, admin_user)

    run_job_here(first)
    second = start_job(JobKind.TRAIN_KEYFRAME, {"steps": 9}, admin_user)
    assert second.exclusive_key == TRAINING_KEY


@pytest.mark.django_db(transaction=True)
def test_two_training_jobs_started_at_the_same_moment_leave_one(step_runners, admin_user):
    """Real threads with their own connections: the database's constraint decides (SQLite
    here, PostgreSQL when DATABASE_URL names one)."""
    results = at_the_same_moment(
        lambda: start_job(JobKind.TRAIN_KEYFRAME, {"steps": 1}, admin_user),
        lambda: start_job(JobKind.TRAIN_KEYFRAME, {"steps": 2}, admin_user),
    )

    started = [result for result in results if isinstance(result, Job)]
    refused = [result for result in results if isinstance(result, JobConflict)]
    assert (len(started), len(refused)) == (1, 1), results
    [job] = Job.objects.all()
    assert job == started[0]
    assert refused[0].holder == job
    assert str(job.uuid) in str(refused[0])
    # The winner's task was queued once it committed.
    assert DBTaskResult.objects.get().args_kwargs["args"] == [str(job.uuid)]


# --- cancel -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_queued_job_is_cancelled_at_once_and_never_runs(job_runners, admin_user):
    calls: list[JobContext] = []
    runner_for_test(JobKind.TRAIN_KEYFRAME, lambda ctx: calls.append(ctx) or {}, exclusive_key=TRAINING_KEY)
    job = start_job(JobKind.TRAIN_KEYFRAME, {}, admin_user)

    cancel_job(job, admin_user)

    assert job.status == JobStatus.CANCELLED
    assert job.cancel_requested_at is not None
    assert job.finished_at is not None
    assert "Cancelled by lab_admin before it started." in job.log_tail
    # The task still arrives at a worker: it must not run the job.
    assert run_job.call(str(job.uuid)) == JobStatus.CANCELLED
    assert calls == []
    # A cancelled job no longer holds the training key.
    start_job(JobKind.TRAIN_KEYFRAME, {}, admin_user)


@pytest.mark.parametrize("noticed_by", ["progress", "check_cancelled"])
@pytest.mark.django_db
def test_a_running_job_stops_at_its_next_report_after_a_cancel(job_runners, admin_user, noticed_by):
    reached: list[str] = []

    def cancelled_halfway(ctx: JobContext) -> dict:
        ctx.progress(0.3, "working")
        ctx.progress(0.4, "working")  # within the write interval: not written, still checked
        # Someone presses "Cancel" on the job's page.
        cancel_job(Job.objects.get(pk=ctx.job.pk), admin_user)
        reached.append("cancel requested")
        if noticed_by == "progress":
            ctx.progress(0.5, "still working")
        else:
            ctx.check_cancelled()
        reached.append("went on after the cancel")
        return {}

    runner_for_test(JobKind.PRELABEL, cancelled_halfway)
    job = start_job(JobKind.PRELABEL, {}, admin_user)

    run_job_here(job)

    assert reached == ["cancel requested"]
    assert job.status == JobStatus.CANCELLED
    assert job.step == "Cancelled"
    assert job.log_tail.splitlines()[-1] == "Cancelled: Cancelled on request."
    assert job.finished_at is not None


@pytest.mark.django_db
def test_cancelling_a_finished_job_changes_nothing(step_runners, admin_user):
    job = run_job_here(start_job(JobKind.PRELABEL, {}, admin_user))

    cancel_job(job, admin_user)

    assert job.status == JobStatus.SUCCEEDED
    assert job.cancel_requested_at is None


# --- resume -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_a_failed_job_resumes_from_its_checkpoint_in_the_same_folder(step_runners, admin_user, settings):
    failed = run_job_here(start_job(JobKind.TRAIN_KEYFRAME, {"steps": 5, "fail_at": 3}, admin_user))
    assert failed.status == JobStatus.FAILED
    folder = settings.VAR_DIR / "jobs" / str(failed.uuid)
    assert (folder / "last_step").read_text() == "3"

    resumed = resume_job(failed, admin_user)

    assert resumed.resumed_from == failed
    assert resumed.parameters == failed.parameters
    assert resumed.status == JobStatus.QUEUED
    run_job_here(resumed)
    assert resumed.status == JobStatus.SUCCEEDED, resumed.error
    # The runner found the checkpoint the failed job wrote, in the same folder.
    assert resumed.metrics == {"steps": 5, "resumed_at_step": 3, "checkpoint_dir": str(folder)}
    assert resumed.log_tail.splitlines()[0] == "starting at step 3"
    assert (folder / "last_step").read_text() == "5"


@pytest.mark.django_db
def test_a_chain_of_resumes_keeps_one_checkpoint_folder(job_runners, admin_user, settings):
    folders: list[str] = []

    def always_fails(ctx: JobContext) -> dict:
        folders.append(str(ctx.checkpoint_dir))
        raise RuntimeError("out of memory")

    runner_for_test(JobKind.PRELABEL, always_fails)
    first = run_job_here(start_job(JobKind.PRELABEL, {}, admin_user))
    second = run_job_here(resume_job(first, admin_user))
    run_job_here(resume_job(second, admin_user))

    assert folders == [str(settings.VAR_DIR / "jobs" / str(first.uuid))] * 3


@pytest.mark.django_db
def test_only_failed_or_cancelled_jobs_resume_and_only_once(step_runners, admin_user):
    succeeded = run_job_here(start_job(JobKind.PRELABEL, {}, admin_user))
    with pytest.raises(JobNotResumable, match="Only failed or cancelled jobs"):
        resume_job(succeeded, admin_user)

    cancelled = start_job(JobKind.PRELABEL, {}, admin_user)
    cancel_job(cancelled, admin_user)
    later = resume_job(cancelled, admin_user)
    with pytest.raises(JobNotResumable, match=f"resumed already, as job {later.uuid}"):
        resume_job(cancelled, admin_user)


@pytest.mark.django_db
def test_resuming_a_training_job_while_another_trains_is_a_conflict(step_runners, admin_user):
    failed = run_job_here(start_job(JobKind.TRAIN_KEYFRAME, {"fail_at": 0}, admin_user))
    other = start_job(JobKind.TRAIN_KEYFRAME, {}, admin_user)

    with pytest.raises(JobConflict) as refused:
        resume_job(failed, admin_user)

    assert refused.value.holder == other


@pytest.mark.django_db
def test_a_kind_that_cannot_resume_is_refused(job_runners, admin_user):
    def fails(ctx: JobContext) -> dict:
        raise RuntimeError("no")

    runner_for_test(JobKind.PRELABEL, fails, resumable=False)
    failed = run_job_here(start_job(JobKind.PRELABEL, {}, admin_user))

    with pytest.raises(JobNotResumable, match="cannot be resumed"):
        resume_job(failed, admin_user)


# --- dead workers -----------------------------------------------------------------------------


@pytest.mark.django_db
def test_the_reaper_fails_running_jobs_whose_heartbeat_is_old_and_nothing_else():
    now = timezone.now()
    dead = JobFactory(
        status=JobStatus.RUNNING, worker="gpu-3:4242", started_at=now - timedelta(minutes=9), heartbeat_at=now
    )
    Job.objects.filter(pk=dead.pk).update(heartbeat_at=now - timedelta(minutes=5))
    never_beat = JobFactory(status=JobStatus.RUNNING, worker="gpu-4:1", started_at=now - timedelta(minutes=5))
    alive = JobFactory(status=JobStatus.RUNNING, started_at=now - timedelta(hours=2), heartbeat_at=now)
    queued = JobFactory(status=JobStatus.QUEUED)
    finished = JobFactory(status=JobStatus.FAILED, error="earlier", heartbeat_at=now - timedelta(days=1))

    reaped = reap_stale_jobs(timedelta(seconds=60))

    assert {job.pk for job in reaped} == {dead.pk, never_beat.pk}
    dead.refresh_from_db()
    assert dead.status == JobStatus.FAILED
    assert dead.error.startswith("Worker gpu-3:4242 stopped sending heartbeats (last at ")
    assert dead.error.endswith("); the process probably died.")
    assert dead.finished_at is not None
    for job, status in [(alive, JobStatus.RUNNING), (queued, JobStatus.QUEUED), (finished, JobStatus.FAILED)]:
        job.refresh_from_db()
        assert job.status == status
    assert finished.error == "earlier"


@pytest.mark.django_db
def test_the_reaper_uses_the_configured_timeout_and_runs_from_the_command_line(settings):
    settings.CAGVLM_JOBS = {**settings.CAGVLM_JOBS, "HEARTBEAT_TIMEOUT": 600}
    now = timezone.now()
    job = JobFactory(status=JobStatus.RUNNING, worker="w:1", started_at=now, heartbeat_at=now)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=now - timedelta(seconds=300))

    assert reap_stale_jobs() == []
    out = _call("reap_jobs", "--timeout", "120")

    assert f"{job.uuid} prelabel: Worker w:1 stopped sending heartbeats" in out
    assert "1 stale job(s) marked failed." in out


def _call(*args: str) -> str:
    from io import StringIO

    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


@pytest.mark.django_db
def test_a_runner_whose_job_was_reaped_stops_and_keeps_the_failure(job_runners):
    def reaped_while_running(ctx: JobContext) -> dict:
        Job.objects.filter(pk=ctx.job.pk).update(heartbeat_at=timezone.now() - timedelta(hours=1))
        assert reap_stale_jobs(timedelta(minutes=1))
        ctx.progress(0.9, "finishing")  # the worker learns here that the job is not its own any more
        return {"never": "stored"}

    runner_for_test(JobKind.PRELABEL, reaped_while_running)
    job = run_job_here(start_job(JobKind.PRELABEL, {}, None))

    assert job.status == JobStatus.FAILED
    assert "stopped sending heartbeats" in job.error
    assert job.metrics == {}


def _database_settings_for_a_child_process() -> str:
    """The test database's connection settings (with the test database's name), as JSON."""
    return json.dumps(connection.settings_dict, default=str)


@pytest.mark.django_db(transaction=True)
def test_a_killed_worker_leaves_a_job_that_the_heartbeat_timeout_marks_failed(step_runners, tmp_path):
    job = start_job(JobKind.PRELABEL, {"steps": 3}, None)
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "cagvlm_site.settings",
        "CAGVLM_TEST_DATABASE": _database_settings_for_a_child_process(),
        "CAGVLM_JOB_HEARTBEAT_INTERVAL": "1",
        "CAGVLM_VAR_DIR": str(tmp_path / "worker-var"),
    }
    output = tmp_path / "worker.log"
    with output.open("wb") as log:
        worker = subprocess.Popen(  # noqa: S603 - our own interpreter and module
            [sys.executable, "-m", "tests.inference.slow_job_worker", str(job.uuid)],
            cwd=REPO_ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        # Wait (bounded) until the worker's heartbeat thread has beaten at least once.
        deadline = time.monotonic() + PROCESS_TIMEOUT_S
        while True:
            job.refresh_from_db()
            if job.status == JobStatus.RUNNING and job.heartbeat_at > job.started_at:
                break
            assert worker.poll() is None, f"the worker exited early:\n{output.read_text()}"
            assert time.monotonic() < deadline, f"no heartbeat from the worker:\n{output.read_text()}"
            time.sleep(0.1)
        assert job.worker == f"{socket.gethostname()}:{worker.pid}"
        # Alive and beating: not reaped.
        assert reap_stale_jobs(timedelta(seconds=30)) == []

        os.kill(worker.pid, signal.SIGKILL)
        assert worker.wait(timeout=PROCESS_TIMEOUT_S) == -signal.SIGKILL
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()

    job.refresh_from_db()
    assert job.status == JobStatus.RUNNING  # nothing marks a dead worker's job but the reaper
    last_beat = job.heartbeat_at
    # Bounded wait until the dead worker's last beat is older than a short timeout.
    deadline = time.monotonic() + PROCESS_TIMEOUT_S
    while not (reaped := reap_stale_jobs(timedelta(seconds=1.5))):
        assert time.monotonic() < deadline
        time.sleep(0.1)

    assert [job.pk for job in reaped] == [job.pk]
    job.refresh_from_db()
    assert job.heartbeat_at == last_beat  # no beat after the kill
    assert job.status == JobStatus.FAILED
    assert job.error.startswith(f"Worker {socket.gethostname()}:{worker.pid} stopped sending heartbeats (last at ")
    assert job.error.endswith("the process probably died.")
    assert f"worker {worker.pid} started" in job.log_tail


# --- the product's runners --------------------------------------------------------------------


def test_the_worker_loads_a_runner_for_every_kind_of_job():
    jobs.load_runners()

    for kind in JobKind:
        registration = jobs.runner_for(kind)
        assert issubclass(registration.parameters_model, BaseModel)
    assert jobs.runner_for(JobKind.TRAIN_KEYFRAME).exclusive_key == TRAINING_KEY


@pytest.mark.parametrize(("progress", "percent"), [(0.0, 0), (0.57, 57), (0.29, 29), (0.999, 99), (1.0, 100)])
def test_the_percent_shown_is_whole_and_never_100_before_the_end(progress, percent):
    assert jobs.job_state(Job(progress=progress), full=False)["percent"] == percent


@pytest.mark.django_db(transaction=True)
def test_serve_fails_the_jobs_of_dead_workers_and_survives_a_database_error(monkeypatch):
    from io import StringIO

    from cagvlm_site.management.commands import serve

    now = timezone.now()
    job = JobFactory(status=JobStatus.RUNNING, worker="w:2", started_at=now, heartbeat_at=now)
    Job.objects.filter(pk=job.pk).update(heartbeat_at=now - timedelta(hours=1))
    errors = StringIO()
    command = serve.Command(stdout=StringIO(), stderr=errors)

    command.reap()

    job.refresh_from_db()
    assert job.status == JobStatus.FAILED
    assert f"Job {job.uuid} failed: Worker w:2 stopped sending heartbeats" in errors.getvalue()

    def database_down(*args: object) -> list:
        raise ConnectionError("database restarting")

    monkeypatch.setattr(serve, "reap_stale_jobs", database_down)
    command.reap()  # logged, not raised: the web server and workers keep running
