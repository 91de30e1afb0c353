"""An admin starts a small training job in the browser and watches it progress live.

The product runs as it does for a user: ``manage.py serve`` in a process of its own (daphne
for HTTP and websockets, and a ``db_worker`` that picks the job from the database queue), on
the test database. The page is never reloaded: its progress, step and status change because
the websocket (or, failing that, polling) delivers the worker's updates.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.contrib.auth.hashers import PBKDF2PasswordHasher
from django.db import connection
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

from annotation.derivatives import StoredFiles
from annotation.models import Frame
from cagvlm_site.roles import Role
from inference.models import FINISHED_JOB_STATUSES, Job, JobStatus, ModelVersion
from inference.parameters import CPU_RECIPE
from tests.browser.conftest import log_in
from tests.conftest import REPO_ROOT, make_user
from tests.factories import CineLoopFactory, ExamFactory, label_loop_frames
from tests.inference.test_training import webp

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SERVER_START_TIMEOUT_S = 60
TRAINING_TIMEOUT_MS = 240_000
TRAINING_EPOCHS = 40


def database_url() -> str:
    settings = connection.settings_dict
    if settings["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{settings['NAME']}"
    user = settings.get("USER") or "postgres"
    host = settings.get("HOST") or "127.0.0.1"
    port = settings.get("PORT") or 5432
    return f"postgres://{user}@{host}:{port}/{settings['NAME']}"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Server:
    def __init__(self, url: str, log: Path) -> None:
        self.url, self.log = url, log

    def diagnosis(self) -> str:
        """What a failed wait shows: the jobs as the database holds them and the server's log."""
        jobs = [
            f"job {job.uuid}: {job.status} at {job.progress:.2f} ({job.step!r}); error {job.error!r}\n{job.log_tail}"
            for job in Job.objects.all()
        ]
        log = self.log.read_text(errors="replace")[-6000:] if self.log.exists() else "(no log)"
        return "\n".join([*(jobs or ["no job"]), "--- server log ---", log])


@pytest.fixture
def product_server(tmp_path: Path, media_root: Path) -> Iterator[Server]:
    """``manage.py serve`` on the test database and the test's media folder."""
    port = free_port()
    env = os.environ | {
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(media_root),
        "CAGVLM_VAR_DIR": str(tmp_path / "server-var"),
        # Static files from the source folders (no collectstatic in a test run).
        "DJANGO_DEBUG": "true",
        "CAGVLM_TORCH_THREADS": "1",
    }
    log_path = tmp_path / "server.log"
    log = log_path.open("wb")
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and manage.py
        [sys.executable, "manage.py", "serve", "--host", "127.0.0.1", "--port", str(port)],
        cwd=REPO_ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + SERVER_START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert server.poll() is None, log_path.read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
        yield Server(f"http://127.0.0.1:{port}", log_path)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
        log.close()


@pytest.fixture
def labelled_exams() -> None:
    """Three exams, a left and a right loop each, with final labels on real WebP frames."""
    files = StoredFiles()
    seed = 0
    for _ in range(3):
        exam = ExamFactory()
        for laterality in ("LCA", "RCA"):
            loop = CineLoopFactory(exam=exam, frame_count=4)
            for frame in loop.frames.all():
                seed += 1
                Frame.objects.filter(pk=frame.pk).update(
                    image=files.save_bytes("frames", "webp", webp(seed, laterality == "LCA"))
                )
            label_loop_frames(loop, [f"{laterality}_{c}" for c in ("better", "bad", "other", "better")])


def wait_on_page(page, server: Server, expression: str) -> None:
    """Wait for a condition on the page; on timeout, fail with the jobs and the server's log."""
    try:
        page.wait_for_function(expression, timeout=TRAINING_TIMEOUT_MS)
    except PlaywrightTimeoutError:
        pytest.fail(f"timed out waiting for {expression}\n{server.diagnosis()}")


def test_admin_starts_training_and_watches_it_progress_without_a_reload(
    page, product_server, labelled_exams, artifacts
):
    admin = make_user("lab_admin", Role.ADMIN)
    # The server process checks passwords with the product's hashers, not the test's fast one.
    hasher = PBKDF2PasswordHasher()
    admin.password = hasher.encode("pw-lab_admin", hasher.salt(), iterations=1000)
    admin.save(update_fields=["password"])
    log_in(page, product_server, admin.username, "pw-lab_admin")

    # Every message the job page's websocket receives, to show the updates came by push.
    pushed: list[str] = []
    page.on(
        "websocket",
        lambda socket: "/ws/jobs/" in socket.url and socket.on("framereceived", lambda payload: pushed.append(payload)),
    )
    page.goto(f"{product_server.url}/models/train/")
    assert page.input_value("#id_arch") == "convnext_base"  # the study's defaults
    page.get_by_role("button", name="CPU (small ConvNeXt, tested on the phantom)").click()
    assert page.input_value("#id_arch") == CPU_RECIPE["arch"]
    assert page.input_value("#id_image_size") == str(CPU_RECIPE["image_size"])
    page.screenshot(path=str(artifacts / "train-form-cpu-recipe.png"), full_page=True)
    # Smaller, so the test trains in seconds; but every epoch runs (no early stopping), so the
    # training lasts several of the consumer's one-second polls and the page shows it part-way
    # even on a fast machine.
    page.fill("#id_image_size", "64")
    page.fill("#id_epochs", str(TRAINING_EPOCHS))
    page.fill("#id_patience", str(TRAINING_EPOCHS))
    page.fill("#id_batch_size", "4")
    page.fill("#id_lr", "0.001")
    page.get_by_role("button", name="Start training").click()
    page.wait_for_url("**/jobs/*/")

    # Marks this page load: a reload or navigation would lose it.
    page.evaluate("window.__sameLoad = true")
    progress = page.locator("[data-job-progress]")
    status = page.locator("[data-job-field=status_label]")
    step = page.locator("[data-job-field=step]")

    # Seen part-way: the worker is training and the page shows it (a job that ends first stops
    # the wait, and the assertion says how it ended).
    wait_on_page(
        page,
        product_server,
        "() => { const p = Number(document.querySelector('[data-job-progress]').value);"
        " const status = document.querySelector('[data-job-status]').dataset.jobStatus;"
        f" return (p > 0 && p < 100) || {json.dumps(list(FINISHED_JOB_STATUSES))}.includes(status); }}",
    )
    midway = float(progress.evaluate("bar => bar.value"))
    assert 0 < midway < 100, f"the page never showed the job part-way\n{product_server.diagnosis()}"
    midway_step = step.inner_text()
    page.screenshot(path=str(artifacts / "training-job-running.png"), full_page=True)

    wait_on_page(
        page,
        product_server,
        "() => document.querySelector('[data-job-field=status_label]').textContent.trim() === 'Succeeded'",
    )
    assert page.evaluate("window.__sameLoad") is True
    assert float(progress.evaluate("bar => bar.value")) == 100 > midway
    assert step.inner_text() != midway_step
    assert status.inner_text().strip() == "Succeeded"
    # The model the job produced appears on the page, and it is in the registry.
    page.locator("[data-job-models] a").wait_for()
    page.screenshot(path=str(artifacts / "training-job-finished.png"), full_page=True)
    job = Job.objects.get()
    assert job.status == JobStatus.SUCCEEDED
    assert job.created_by == admin
    recipe_fields = ("arch", "epoch_fraction", "augmentation")
    assert [job.parameters[name] for name in recipe_fields] == [CPU_RECIPE[name] for name in recipe_fields]
    assert (job.parameters["epochs"], job.parameters["patience"]) == (TRAINING_EPOCHS, TRAINING_EPOCHS)
    assert ModelVersion.objects.get().training_job == job
    assert len(pushed) >= 3, "the progress should arrive over the websocket"
    assert page.locator("[data-job-connection]").is_hidden()
    assert page.js_errors == []
