"""The job system: start, run, watch, cancel, resume and reap long work.

A job is a ``Job`` row plus a django task (``inference.tasks.run_job``) that a worker process
(``manage.py db_worker``) picks up. What a job does is a *runner*, a plain function registered
per ``JobKind`` with the pydantic model of its parameters::

    @register_runner(JobKind.TRAIN_KEYFRAME, TrainKeyframeParameters, exclusive_key="train:keyframe_cnn")
    def train(ctx: JobContext) -> dict:
        ...
        ctx.progress(epoch / epochs, f"epoch {epoch}", metrics={"val_loss": loss})
        return {"macro_f1": 0.9}  # stored in Job.metrics

The worker marks the job running, keeps a heartbeat from a thread of its own, and writes the
runner's progress and log to the row (throttled) while pushing each change to the job's
channel-layer group, which the job pages' websocket consumer (``inference.consumers``) relays.
The row stays the source of truth: pages read it, and fall back to polling it.

Jobs that must never run side by side share an ``exclusive_key``; a partial unique constraint
over active jobs makes the database refuse the second one (``JobConflict``), so two admins
pressing "train" at once cannot both win. A worker that dies leaves a running job whose
heartbeat stops; ``reap_stale_jobs`` marks it failed with the reason.
"""

from __future__ import annotations

import importlib
import logging
import math
import os
import socket
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from functools import cached_property, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.dateformat import format as date_format
from pydantic import BaseModel

from inference.models import ACTIVE_JOB_STATUSES, Job, JobKind, JobStatus

if TYPE_CHECKING:
    from django.contrib.auth.models import User

logger = logging.getLogger(__name__)

#: Modules that register the product's runners; the worker imports them before running a job.
RUNNER_MODULES = ["inference.training", "inference.prelabel"]

#: The channel-layer group of the jobs list page: every job's changes, without log and metrics.
JOBS_GROUP = "jobs"

#: Lines of log kept on the row, and the longest line kept.
LOG_TAIL_LINES = 200
LOG_LINE_CHARS = 1000
#: Lines of a failed runner's traceback appended to the log tail.
TRACEBACK_LINES = 15
#: Progress and log are written to the row at most this often (the final progress always).
WRITE_INTERVAL_S = 0.5

Runner = Callable[["JobContext"], dict[str, Any] | None]


class JobCancelled(Exception):
    """Raised inside a runner (by ``progress`` or ``check_cancelled``) to stop it: a user asked
    for the job to be cancelled, or the job stopped being this worker's (it was reaped)."""


class JobConflict(Exception):
    """A job could not start: an active job holds its exclusive key. ``str()`` is the message
    for the user; ``holder`` is the job in the way (None if it finished meanwhile)."""

    def __init__(self, message: str, *, holder: Job | None = None) -> None:
        super().__init__(message)
        self.holder = holder


class JobNotResumable(Exception):
    """Resume refused: the job is not failed or cancelled, its kind cannot resume, or it was
    resumed already. ``str()`` is the message for the user."""


# --- runners ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunnerRegistration:
    kind: JobKind
    parameters_model: type[BaseModel]
    runner: Runner
    exclusive_key: str | None
    resumable: bool


_RUNNERS: dict[str, RunnerRegistration] = {}

# How a conflict names the kind of job in the way ("A key-frame CNN training job is ...").
_JOB_NOUNS = {JobKind.TRAIN_KEYFRAME: "key-frame CNN training job", JobKind.PRELABEL: "pre-labelling job"}


def register_runner(
    kind: JobKind | str,
    parameters_model: type[BaseModel],
    *,
    exclusive_key: str | None = None,
    resumable: bool = True,
    replace: bool = False,
) -> Callable[[Runner], Runner]:
    """Register the decorated ``runner(ctx) -> dict`` for jobs of ``kind``.

    ``exclusive_key``: jobs with the same key never run side by side (the database refuses the
    second). ``resumable``: a failed or cancelled job of this kind may be resumed. ``replace``
    lets tests put their own runner in place of the product's.
    """
    job_kind = JobKind(kind)

    def decorator(runner: Runner) -> Runner:
        existing = _RUNNERS.get(job_kind)
        if existing is not None and not replace and _qualified_name(existing.runner) != _qualified_name(runner):
            raise ImproperlyConfigured(
                f"A runner is already registered for {job_kind.value!r}: {_qualified_name(existing.runner)}"
            )
        _RUNNERS[job_kind] = RunnerRegistration(job_kind, parameters_model, runner, exclusive_key, resumable)
        return runner

    return decorator


def _qualified_name(function: Callable[..., Any]) -> str:
    return f"{function.__module__}.{function.__qualname__}"


def load_runners() -> None:
    """Import the modules that register the product's runners (idempotent)."""
    for module in RUNNER_MODULES:
        importlib.import_module(module)


def runner_for(kind: JobKind | str) -> RunnerRegistration:
    if kind not in _RUNNERS:
        load_runners()
    try:
        return _RUNNERS[kind]
    except KeyError:
        raise ImproperlyConfigured(f"No runner is registered for jobs of kind {kind!r}") from None


# --- pushing changes to the pages ---------------------------------------------------------------


def _display_time(value: datetime | None) -> str:
    return date_format(timezone.localtime(value), "Y-m-d H:i:s") if value else ""


def format_duration(seconds: float) -> str:
    """ "3 s", "4 min 05 s", "2 h 03 min": how long a job ran."""
    seconds = max(int(seconds), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes} min {seconds:02d} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def job_duration(job: Job) -> str:
    if job.started_at is None:
        return ""
    end = job.finished_at or timezone.now()
    return format_duration((end - job.started_at).total_seconds())


def job_can_resume(job: Job) -> bool:
    """Failed or cancelled, of a resumable kind, and not resumed yet (one query when finished)."""
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        return False
    try:
        resumable = runner_for(job.kind).resumable
    except ImproperlyConfigured:
        return False
    return resumable and not job.resumptions.exists()


def job_state(job: Job, *, full: bool = True) -> dict[str, Any]:
    """What the job pages show of a job, as JSON: the websocket messages and the state
    endpoints carry exactly this. ``full=False`` (the jobs list) leaves out the log, the
    metrics and anything that costs a query."""
    state: dict[str, Any] = {
        "uuid": str(job.uuid),
        "url": job.get_absolute_url(),
        "kind": job.kind,
        "kind_label": job.get_kind_display(),
        "status": job.status,
        "status_label": job.get_status_display(),
        "progress": job.progress,
        # Whole percent, rounded down (a bar at 100 % means done); the epsilon keeps 0.57 at
        # 57, not 56 (0.57 * 100 is 56.99999999999999 in floating point).
        "percent": math.floor(job.progress * 100 + 1e-9),
        "step": job.step,
        "error": job.error,
        "is_active": job.is_active,
        "is_finished": job.is_finished,
        "cancel_requested": job.cancel_requested_at is not None,
        "created_at": _display_time(job.created_at),
        "started_at": _display_time(job.started_at),
        "finished_at": _display_time(job.finished_at),
        "heartbeat_at": _display_time(job.heartbeat_at),
        "duration": job_duration(job),
        "worker": job.worker,
        # What the consumer and the pages compare to tell a change (heartbeats do not count).
        "updated_at": job.updated_at.isoformat() if job.updated_at else "",
    }
    if full:
        state["log_tail"] = job.log_tail
        state["metrics"] = job.metrics
        state["can_resume"] = job_can_resume(job)
        state["model_versions"] = (
            [{"label": str(version), "url": version.get_absolute_url()} for version in job.model_versions.all()]
            if job.is_finished  # a training job registers its model near the end
            else []
        )
    return state


def push_job_update(job: Job) -> None:
    """Send the job's state to its group and to the jobs list group.

    Best effort: a channel layer that is down must never fail the job (the pages poll the row).
    """
    try:
        layer = get_channel_layer()
        if layer is None:
            return
        job_message = {"type": "job.update", "job": job_state(job)}
        list_message = {"type": "job.update", "job": job_state(job, full=False)}

        async def send() -> None:
            await layer.group_send(job.group_name, job_message)
            await layer.group_send(JOBS_GROUP, list_message)

        async_to_sync(send)()
    except Exception:
        logger.warning("Could not push the update of job %s to the channel layer", job.uuid, exc_info=True)


# --- JSON for the row -------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """``value`` with numpy scalars and arrays, paths, UUIDs and dates turned into JSON, and
    NaN or infinite floats into None (PostgreSQL's jsonb refuses them)."""
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [jsonable(item) for item in value]
    if isinstance(value, datetime | date):
        return value.isoformat()
    if hasattr(value, "tolist"):  # numpy scalars and arrays, torch tensors
        return jsonable(value.tolist())
    return str(value)


# --- the context a runner works in -----------------------------------------------------------


@dataclass
class JobContext:
    """What a runner gets: its job, its validated parameters, a checkpoint folder, and the
    means to report progress and log lines and to notice a cancel request."""

    job: Job
    parameters: BaseModel
    on_progress: Callable[[Job], None] | None = None
    _lines: deque[str] = field(init=False, repr=False)
    _last_write: float | None = field(default=None, init=False, repr=False)
    _dirty: bool = field(default=False, init=False, repr=False)

    def __post_init__(self) -> None:
        self._lines = deque(self.job.log_tail.splitlines(), maxlen=LOG_TAIL_LINES)

    @cached_property
    def checkpoint_dir(self) -> Path:
        """``VAR_DIR/jobs/<uuid of the first job of the resume chain>``: a resumed job works in
        its predecessor's folder and finds its checkpoints there."""
        root = self.job
        seen = {root.pk}
        while root.resumed_from_id is not None and root.resumed_from_id not in seen:
            seen.add(root.resumed_from_id)
            predecessor = Job.objects.filter(pk=root.resumed_from_id).only("uuid", "resumed_from").first()
            if predecessor is None:
                break
            root = predecessor
        path = Path(settings.VAR_DIR) / "jobs" / str(root.uuid)
        path.mkdir(parents=True, exist_ok=True)
        return path

    @property
    def log_tail(self) -> str:
        return "\n".join(self._lines)

    def progress(self, fraction: float, step: str | None = None, metrics: dict[str, Any] | None = None) -> None:
        """Report how far the job is (0 to 1), what it does now, and live metrics (merged into
        the job's metrics). Written at most every WRITE_INTERVAL_S, the final call (fraction 1)
        always. Raises JobCancelled when a cancel was requested: every call looks (one indexed
        read when it does not write), so a runner stops at its next report."""
        value = float(fraction)
        if math.isfinite(value):
            self.job.progress = min(max(value, 0.0), 1.0)
        if step is not None:
            self.job.step = step[:200]
        if metrics:
            self.job.metrics = {**self.job.metrics, **jsonable(metrics)}
        self._dirty = True
        self._notify()
        if self._may_write(final=value >= 1.0):
            self._write(raise_if_cancelled=True)
        else:
            self._raise_if_cancelled()

    def log(self, line: str) -> None:
        """Append a line (or lines) to the job's log tail; also logged by the worker."""
        logger.info("job %s: %s", str(self.job.uuid)[:8], line)
        for part in str(line).splitlines() or [""]:
            self._lines.append(part[:LOG_LINE_CHARS])
        self.job.log_tail = self.log_tail
        self._dirty = True
        self._notify()
        if self._may_write(final=False):
            self._write(raise_if_cancelled=False)

    def check_cancelled(self) -> None:
        """Raise JobCancelled if a cancel was requested (reads the row; writes pending
        progress too when it is due)."""
        if self._may_write(final=False):
            self._write(raise_if_cancelled=True)
        else:
            self._raise_if_cancelled()

    # -- internals --

    def _raise_if_cancelled(self) -> None:
        row = Job.objects.filter(pk=self.job.pk).values_list("status", "cancel_requested_at").first()
        if row is None or row[0] != JobStatus.RUNNING:
            # Reaped (or finished by someone else): the job is no longer this worker's.
            raise JobCancelled("The job is no longer running on this worker.")
        if row[1] is not None:
            self.job.cancel_requested_at = row[1]
            raise JobCancelled("Cancelled on request.")

    def _notify(self) -> None:
        if self.on_progress is not None:
            self.on_progress(self.job)

    def _may_write(self, *, final: bool) -> bool:
        """Whether pending changes are due for the row (nothing pending: nothing to write)."""
        if not self._dirty:
            return False
        return final or self._last_write is None or time.monotonic() - self._last_write >= WRITE_INTERVAL_S

    def _write(self, *, raise_if_cancelled: bool) -> None:
        now = timezone.now()
        fields = {
            "progress": self.job.progress,
            "step": self.job.step,
            "log_tail": self.log_tail,
            "metrics": self.job.metrics,
            "updated_at": now,
        }
        self._last_write = time.monotonic()
        self._dirty = False
        # One UPDATE writes the progress and, by its guard, tells whether a cancel is pending.
        written = Job.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING, cancel_requested_at=None).update(
            **fields
        )
        if written:
            self.job.updated_at = now
            push_job_update(self.job)
            return
        row = Job.objects.filter(pk=self.job.pk).values_list("status", "cancel_requested_at").first()
        if row is None or row[0] != JobStatus.RUNNING:
            # Reaped (or finished by someone else): the job is no longer this worker's.
            if raise_if_cancelled:
                raise JobCancelled("The job is no longer running on this worker.")
            return
        Job.objects.filter(pk=self.job.pk, status=JobStatus.RUNNING).update(**fields)
        self.job.updated_at = now
        self.job.cancel_requested_at = row[1]
        push_job_update(self.job)
        if raise_if_cancelled:
            raise JobCancelled("Cancelled on request.")


class _Heartbeat(threading.Thread):
    """Writes the job's heartbeat every interval from its own database connection, whatever the
    runner is doing (a long step between two progress reports included)."""

    def __init__(self, job: Job, interval: float) -> None:
        super().__init__(name=f"heartbeat-{job.uuid.hex[:8]}", daemon=True)
        self.job_pk = job.pk
        self.interval = interval
        self._stop_requested = threading.Event()

    def run(self) -> None:
        try:
            while not self._stop_requested.wait(self.interval):
                try:
                    running = Job.objects.filter(pk=self.job_pk, status=JobStatus.RUNNING)
                    # Read first: a read never waits for SQLite's write lock, and a job this
                    # connection cannot see running (finished, reaped, or not committed, as in
                    # a test's transaction) needs no heartbeat.
                    if not running.exists() or not running.update(heartbeat_at=timezone.now()):
                        return  # the runner learns at its next report
                except Exception:
                    # A database hiccup: keep beating; the reaper decides when silence is death.
                    logger.warning("Heartbeat of job %s failed", self.job_pk, exc_info=True)
        finally:
            connection.close()

    def stop(self) -> None:
        self._stop_requested.set()
        self.join()


# --- starting and running ---------------------------------------------------------------------


def _conflict_message(holder: Job | None, key: str) -> str:
    if holder is None:
        return f"Another job holding {key!r} is queued or running; try again when it has finished."
    noun = _JOB_NOUNS.get(JobKind(holder.kind), f"{holder.get_kind_display().lower()} job")
    return f"A {noun} is already queued or running: {holder.uuid}"


def start_job(
    kind: JobKind | str,
    parameters: dict[str, Any] | BaseModel,
    user: User | AnonymousUser | None,
    *,
    resumed_from: Job | None = None,
) -> Job:
    """Validate the parameters (pydantic's ValidationError reaches the caller), create the job
    and queue its task once the transaction commits.

    Raises JobConflict when an active job holds the kind's exclusive key: the database's
    partial unique constraint decides, so of two starts at the same moment one wins.
    """
    registration = runner_for(kind)
    validated = registration.parameters_model.model_validate(parameters)
    created_by = None if user is None or isinstance(user, AnonymousUser) else user
    try:
        with transaction.atomic():
            job = Job.objects.create(
                kind=registration.kind,
                parameters=validated.model_dump(mode="json"),
                created_by=created_by,
                resumed_from=resumed_from,
                exclusive_key=registration.exclusive_key,
                step="Waiting for a worker",
            )
    except IntegrityError as exc:
        key = registration.exclusive_key
        if key is None:
            raise
        holder = Job.objects.filter(exclusive_key=key, status__in=ACTIVE_JOB_STATUSES).first()
        raise JobConflict(_conflict_message(holder, key), holder=holder) from exc
    transaction.on_commit(partial(_enqueue, job))
    return job


def _enqueue(job: Job) -> None:
    """Queue the job's task (after commit, so the worker finds the row)."""
    from inference.tasks import run_job  # the task module imports this one

    try:
        result = run_job.enqueue(str(job.uuid))
    except Exception as exc:
        logger.exception("Could not queue job %s", job.uuid)
        now = timezone.now()
        Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
            status=JobStatus.FAILED, error=f"Could not queue the job: {exc}", finished_at=now, updated_at=now
        )
        job.refresh_from_db()
    else:
        job.task_result_id = str(result.id)
        Job.objects.filter(pk=job.pk).update(task_result_id=job.task_result_id)
    push_job_update(job)


def execute_job(job_uuid: str | UUID, *, on_progress: Callable[[Job], None] | None = None) -> Job:
    """Run the queued job with this UUID here: what the worker's task does."""
    return run_job_here(Job.objects.get(uuid=job_uuid), on_progress=on_progress)


def run_job_here(job: Job, *, on_progress: Callable[[Job], None] | None = None) -> Job:
    """Run a queued job in this process (the worker's task, management commands, tests).

    Claims the job (only if still queued and not cancelled: a job cancelled before it started
    is not run, and a task delivered twice runs once), keeps its heartbeat, runs its runner and
    records the outcome: succeeded with the runner's metrics, cancelled, or failed with the
    error and the end of the traceback in the log tail. Returns the job, refreshed.
    """
    now = timezone.now()
    claimed = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED, cancel_requested_at=None).update(
        status=JobStatus.RUNNING,
        started_at=now,
        heartbeat_at=now,
        worker=f"{socket.gethostname()}:{os.getpid()}"[:200],
        step="Starting",
        updated_at=now,
    )
    job.refresh_from_db()
    if not claimed:
        logger.info("Job %s is %s, not queued: not running it", job.uuid, job.status)
        return job
    push_job_update(job)

    context: JobContext | None = None
    heartbeat: _Heartbeat | None = None
    outcome: dict[str, Any] = {}
    interrupted: BaseException | None = None
    try:
        registration = runner_for(job.kind)
        context = JobContext(
            job=job, parameters=registration.parameters_model.model_validate(job.parameters), on_progress=on_progress
        )
        heartbeat = _Heartbeat(job, settings.CAGVLM_JOBS["HEARTBEAT_INTERVAL"])
        heartbeat.start()
        result = registration.runner(context)
    except JobCancelled as exc:
        outcome = {"status": JobStatus.CANCELLED, "step": "Cancelled", "log": [f"Cancelled: {exc}"]}
    except Exception as exc:
        lines = traceback.format_exc().rstrip().splitlines()[-TRACEBACK_LINES:]
        outcome = {"status": JobStatus.FAILED, "error": str(exc) or type(exc).__name__, "log": lines}
    except BaseException as exc:  # KeyboardInterrupt, SystemExit: record, then let it go on
        interrupted = exc
        outcome = {"status": JobStatus.FAILED, "error": f"The worker was interrupted ({type(exc).__name__})."}
    else:
        metrics = jsonable(result) if result is not None else job.metrics
        outcome = {
            "status": JobStatus.SUCCEEDED,
            "step": "Finished",
            "progress": 1.0,
            "metrics": metrics if isinstance(metrics, dict) else {"result": metrics},
        }
    finally:
        if heartbeat is not None:
            heartbeat.stop()

    _finish(job, context, outcome)
    if interrupted is not None:
        raise interrupted
    return job


def _finish(job: Job, context: JobContext | None, outcome: dict[str, Any]) -> None:
    lines: Iterable[str] = context.log_tail.splitlines() if context is not None else job.log_tail.splitlines()
    log_tail = "\n".join(deque([*lines, *outcome.get("log", [])], maxlen=LOG_TAIL_LINES))
    now = timezone.now()
    finished = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING).update(
        status=outcome["status"],
        finished_at=now,
        progress=outcome.get("progress", job.progress),
        step=outcome.get("step", job.step),
        metrics=outcome.get("metrics", job.metrics),
        error=outcome.get("error", ""),
        log_tail=log_tail,
        updated_at=now,
    )
    if not finished:
        logger.warning("Job %s was no longer running when its runner ended (reaped?); outcome dropped", job.uuid)
    job.refresh_from_db()
    push_job_update(job)


# --- cancel, resume, reap ---------------------------------------------------------------------


def cancel_job(job: Job, user: User | AnonymousUser | None) -> None:
    """Cancel a job: a queued one at once, a running one at its runner's next progress() or
    check_cancelled(). A finished job is left as it is."""
    now = timezone.now()
    who = user.get_username() if user is not None and user.is_authenticated else "the command line"
    cancelled = Job.objects.filter(pk=job.pk, status=JobStatus.QUEUED).update(
        status=JobStatus.CANCELLED,
        cancel_requested_at=now,
        finished_at=now,
        step="Cancelled before it started",
        log_tail=f"Cancelled by {who} before it started.",
        updated_at=now,
    )
    if not cancelled:
        requested = Job.objects.filter(pk=job.pk, status=JobStatus.RUNNING, cancel_requested_at=None).update(
            cancel_requested_at=now, updated_at=now
        )
        if requested:
            logger.info("Cancel of job %s requested by %s", job.uuid, who)
    job.refresh_from_db()
    push_job_update(job)


def resume_job(job: Job, user: User | AnonymousUser | None) -> Job:
    """Start a new job of the same kind and parameters that continues a failed or cancelled one
    (``resumed_from``); its runner finds the predecessor's checkpoints in its checkpoint_dir.

    Raises JobNotResumable, or JobConflict when the kind's exclusive key is taken.
    """
    if job.status not in (JobStatus.FAILED, JobStatus.CANCELLED):
        raise JobNotResumable(
            f"Only failed or cancelled jobs can be resumed; this one is {job.get_status_display().lower()}."
        )
    if not runner_for(job.kind).resumable:
        raise JobNotResumable(f"Jobs of kind “{job.get_kind_display()}” cannot be resumed; start a new one.")
    # One continuation per job keeps two jobs from working in one checkpoint folder.
    successor = job.resumptions.order_by("-created_at").first()
    if successor is not None:
        raise JobNotResumable(f"This job was resumed already, as job {successor.uuid}.")
    return start_job(job.kind, job.parameters, user, resumed_from=job)


def reap_stale_jobs(timeout: timedelta | None = None) -> list[Job]:
    """Mark failed the running jobs whose heartbeat (or start, before the first beat) is older
    than ``timeout`` (default: settings.CAGVLM_JOBS["HEARTBEAT_TIMEOUT"]): their worker died.

    Cheap enough for every jobs page: one indexed SELECT, and a guarded UPDATE per stale job
    (a beat arriving meanwhile saves it).
    """
    if timeout is None:
        timeout = timedelta(seconds=settings.CAGVLM_JOBS["HEARTBEAT_TIMEOUT"])
    now = timezone.now()
    cutoff = now - timeout
    stale = Q(status=JobStatus.RUNNING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
    )
    reaped = []
    for job in Job.objects.filter(stale):
        last = job.heartbeat_at or job.started_at
        last_text = timezone.localtime(last).strftime("%Y-%m-%d %H:%M:%S %Z") if last else "never"
        error = (
            f"Worker {job.worker or '(unknown)'} stopped sending heartbeats (last at {last_text}); "
            "the process probably died."
        )
        if Job.objects.filter(stale, pk=job.pk).update(
            status=JobStatus.FAILED, error=error, finished_at=now, updated_at=now
        ):
            logger.warning("Job %s: %s", job.uuid, error)
            job.refresh_from_db()
            push_job_update(job)
            reaped.append(job)
    return reaped
