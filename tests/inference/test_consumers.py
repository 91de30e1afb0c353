"""The job websockets, through the site's ASGI application (origin check, session auth,
routing): who may connect, and that a job's progress reaches an admin's page, both pushed
through the channel layer and, where that layer stays in one process, read from the row."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client
from django.utils import timezone

from cagvlm_site.asgi import application
from inference.consumers import CLOSE_FORBIDDEN, CLOSE_NOT_FOUND, JobConsumer
from inference.jobs import JobContext, register_runner, run_job_here, start_job
from inference.models import Job, JobKind, JobStatus
from tests.inference.jobs_support import StepParameters

pytestmark = [pytest.mark.asyncio, pytest.mark.django_db(transaction=True)]

RECEIVE_TIMEOUT_S = 10


@pytest.fixture
def halfway_runner(job_runners):
    """A runner that reports half-way with a metric, logs, and finishes."""

    @register_runner(JobKind.PRELABEL, StepParameters, replace=True)
    def halfway(ctx: JobContext) -> dict:
        ctx.progress(0.5, "half-way there", metrics={"val_loss": 0.5})
        ctx.log("half of the frames pre-labelled")
        return {"frames": 10}

    return halfway


@pytest.fixture
def pushes_only(monkeypatch):
    """The consumer relies on the channel layer alone: only a push can deliver."""
    monkeypatch.setattr(JobConsumer, "needs_polling", lambda self: False)


@pytest.fixture
def polling_only(monkeypatch):
    """The consumer reads the rows (fast) as with the in-memory layer, whatever the layer."""
    monkeypatch.setattr(JobConsumer, "needs_polling", lambda self: True)
    monkeypatch.setattr(JobConsumer, "poll_interval_s", 0.05)


@sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies[settings.SESSION_COOKIE_NAME].value


async def open_socket(path: str, user=None) -> tuple[WebsocketCommunicator, bool, object]:
    headers = [(b"origin", b"http://testserver")]
    if user is not None:
        headers.append((b"cookie", f"{settings.SESSION_COOKIE_NAME}={await session_cookie(user)}".encode()))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, detail = await communicator.connect(timeout=RECEIVE_TIMEOUT_S)
    return communicator, connected, detail


async def receive_until(communicator: WebsocketCommunicator, done) -> list[dict]:
    """Messages until one satisfies ``done`` (bounded by the receive timeout)."""
    received = []
    while True:
        message = await communicator.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
        received.append(message)
        if done(message):
            return received


create_job = database_sync_to_async(lambda: start_job(JobKind.PRELABEL, {}, None))
run_here = database_sync_to_async(run_job_here)


@pytest.mark.parametrize("path", ["/ws/jobs/", "/ws/jobs/{uuid}/"])
async def test_an_anonymous_visitor_is_refused(halfway_runner, path):
    job = await create_job()

    _, connected, code = await open_socket(path.format(uuid=job.uuid))

    assert (connected, code) == (False, CLOSE_FORBIDDEN)


@pytest.mark.parametrize("visitor", ["physician", "cardiologist", "no_role"])
async def test_clinical_staff_without_the_admin_role_are_refused(halfway_runner, users_by_role, visitor):
    user = users_by_role[visitor]
    job = await create_job()

    for path in ("/ws/jobs/", f"/ws/jobs/{job.uuid}/"):
        _, connected, code = await open_socket(path, user)
        assert (connected, code) == (False, CLOSE_FORBIDDEN), path


async def test_an_unknown_job_is_refused(admin_user):
    _, connected, code = await open_socket("/ws/jobs/00000000-0000-0000-0000-000000000000/", admin_user)

    assert (connected, code) == (False, CLOSE_NOT_FOUND)


async def test_a_socket_from_another_site_is_refused(admin_user):
    communicator = WebsocketCommunicator(application, "/ws/jobs/", headers=[(b"origin", b"http://evil.example")])

    connected, _ = await communicator.connect(timeout=RECEIVE_TIMEOUT_S)

    assert not connected


async def test_an_admin_gets_the_state_then_the_progress_the_worker_pushes(halfway_runner, admin_user, pushes_only):
    job = await create_job()
    other = await create_job()
    communicator, connected, _ = await open_socket(f"/ws/jobs/{job.uuid}/", admin_user)
    assert connected

    first = await communicator.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert first["type"] == "job"
    assert (first["job"]["uuid"], first["job"]["status"]) == (str(job.uuid), "queued")

    await run_here(other)  # another job's progress must not reach this socket
    await run_here(job)
    received = await receive_until(communicator, lambda message: message["job"]["status"] == "succeeded")

    assert {message["job"]["uuid"] for message in received} == {str(job.uuid)}
    halfway = next(message["job"] for message in received if message["job"]["step"] == "half-way there")
    assert (halfway["status"], halfway["percent"]) == ("running", 50)
    assert halfway["metrics"] == {"val_loss": 0.5}
    final = received[-1]["job"]
    assert final["metrics"] == {"frames": 10}
    assert final["log_tail"] == "half of the frames pre-labelled"
    assert final["percent"] == 100
    await communicator.disconnect()


async def test_the_list_socket_sends_every_jobs_changes_without_logs(halfway_runner, admin_user, pushes_only):
    job = await create_job()
    communicator, connected, _ = await open_socket("/ws/jobs/", admin_user)
    assert connected

    snapshot = await communicator.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
    assert snapshot["type"] == "jobs"
    assert [state["uuid"] for state in snapshot["jobs"]] == [str(job.uuid)]

    new = await create_job()
    await run_here(new)
    received = await receive_until(communicator, lambda message: message["job"]["status"] == "succeeded")

    assert {message["job"]["uuid"] for message in received} == {str(new.uuid)}
    assert any(message["job"]["step"] == "half-way there" for message in received)
    assert all("log_tail" not in message["job"] and "metrics" not in message["job"] for message in received)
    await communicator.disconnect()


async def test_where_the_channel_layer_stays_in_one_process_the_consumer_reads_the_row(admin_user, polling_only):
    """A worker in another process writes the row; nothing is pushed here, yet the page
    learns of it."""
    job = await database_sync_to_async(Job.objects.create)(kind=JobKind.PRELABEL)
    single, connected, _ = await open_socket(f"/ws/jobs/{job.uuid}/", admin_user)
    assert connected
    listing, connected, _ = await open_socket("/ws/jobs/", admin_user)
    assert connected
    assert (await single.receive_json_from(timeout=RECEIVE_TIMEOUT_S))["job"]["status"] == "queued"
    assert (await listing.receive_json_from(timeout=RECEIVE_TIMEOUT_S))["type"] == "jobs"

    # What a worker process writes: the row changes, no message is sent through this process.
    await database_sync_to_async(Job.objects.filter(pk=job.pk).update)(
        status=JobStatus.RUNNING, progress=0.7, step="written by another process", updated_at=timezone.now()
    )

    for communicator in (single, listing):
        message = await communicator.receive_json_from(timeout=RECEIVE_TIMEOUT_S)
        assert message["type"] == "job"
        assert (message["job"]["uuid"], message["job"]["percent"]) == (str(job.uuid), 70)
        assert message["job"]["step"] == "written by another process"
        # Sent once per change, not once per read.
        assert await communicator.receive_nothing(timeout=0.3)
        await communicator.disconnect()


async def test_the_consumer_polls_only_where_the_channel_layer_stays_in_one_process():
    from channels.layers import InMemoryChannelLayer
    from channels_redis.core import RedisChannelLayer

    consumer = JobConsumer()
    for layer, polls in [(InMemoryChannelLayer(), True), (None, True), (RedisChannelLayer(), False)]:
        consumer.channel_layer = layer
        assert consumer.needs_polling() is polls, layer
