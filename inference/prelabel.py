"""Pre-labelling: the key-frame CNN over the frames of exams, its predictions stored as
``annotation.PreLabel`` rows, then the exams' key frames picked from them.

``prelabel_exams`` is the plain function (a command, the job and a test call it); the job
runner registered for ``JobKind.PRELABEL`` resolves the exams and the model, reports progress
per batch and picks key frames per exam. ``start_prelabel_after_ingest`` is the hook that the
upload page, the ingest API and the ``ingest`` command call: new exams are pre-labelled when
an active key-frame model exists, and ingest works as before when none does.

Memory stays bounded: one exam's frame ids at a time, one batch of WebP bytes at a time. The
rows are upserted on (frame, model version), so running a model twice over an exam replaces
its earlier predictions rather than adding to them, and two jobs over one exam cannot collide.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol, cast
from uuid import UUID

import numpy as np
from django.db.models import Exists, OuterRef, QuerySet

from annotation.derivatives import read_stored
from annotation.ingest import Outcome
from annotation.models import SIX_CLASSES, Exam, Frame, PreLabel
from inference.jobs import JobContext, register_runner, start_job
from inference.keyframes import pick_key_frames
from inference.models import Job, JobKind, KeyFrame, ModelKind, ModelVersion
from inference.parameters import PrelabelParameters
from inference.references import loop_reference_names
from inference.registry import active_version, load_predictor

if TYPE_CHECKING:
    from django.contrib.auth.models import User

    from annotation.ingest import IngestReport

FrameChoice = Literal["all", "sampled"]
#: ``progress(frames_done, frames_total)``, called after every batch.
ProgressCallback = Callable[[int, int], None]
# Probabilities are stored to this many decimals: float32 carries no more.
DECIMALS = 6
_EPSILON = 1e-12


class PrelabelError(Exception):
    """Pre-labelling cannot start; the message says why and what to do."""


class Predictor(Protocol):
    def predict(
        self, items: Iterable[bytes], *, batch_size: int = ..., references: Iterable[bytes] | None = ...
    ) -> np.ndarray: ...


# --- uncertainty -----------------------------------------------------------------------------


def entropy_and_margin(probabilities: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per row of (N, 6) probabilities: the entropy in nats and the margin between the two
    most probable classes (top-1 minus top-2)."""
    p = np.clip(np.asarray(probabilities, dtype=np.float64), 0.0, 1.0)
    entropy = np.maximum(-(p * np.log(np.clip(p, _EPSILON, None))).sum(axis=1), 0.0)
    top_two = np.sort(p, axis=1)[:, -2:]
    margin = top_two[:, 1] - top_two[:, 0]
    return entropy, margin


# --- the plain function ----------------------------------------------------------------------


def _frames_of(exam_ids: Sequence[int], frames: FrameChoice) -> QuerySet[Frame]:
    rows = Frame.objects.filter(loop__exam_id__in=exam_ids)
    if frames == "sampled":
        rows = rows.filter(is_sampled=True)
    return rows


def count_frames(exams: Iterable[Exam], frames: FrameChoice = "all") -> int:
    return _frames_of([exam.pk for exam in exams], frames).count()


class FrameRow(NamedTuple):
    pk: int
    image: str
    loop_id: int
    frame_index: int
    reference: str | None = None  # the loop's minimum projection, for a model that reads it


def _batches(
    exams: Sequence[Exam], frames: FrameChoice, batch_size: int, *, with_reference: bool = False
) -> Iterator[list[FrameRow]]:
    """Frames in batches of ``batch_size``, exam after exam and loop after loop (a batch may
    span two loops or exams). Holds one exam's ids at a time. ``with_reference``: each row
    names its loop's minimum projection, made here (from all the loop's frames) if missing."""
    batch: list[FrameRow] = []
    for exam in exams:
        rows = _frames_of([exam.pk], frames).order_by("loop_id", "index").values_list("pk", "image", "loop_id", "index")
        references: dict[int, str] = {}
        if with_reference:
            references = loop_reference_names(exam.loops.values_list("pk", flat=True))
        for row in rows:
            batch.append(FrameRow(*row, reference=references.get(row[2])))
            if len(batch) == batch_size:
                yield batch
                batch = []
    if batch:
        yield batch


def _read_batch(batch: list[FrameRow]) -> tuple[list[bytes], list[bytes] | None]:
    """The batch's frame images and, when the rows name them, their loop references (read
    once per loop: a loop's frames share one bytes object)."""
    images = [read_stored(row.image) for row in batch]
    if batch[0].reference is None:
        return images, None
    read: dict[str, bytes] = {}
    references = []
    for row in batch:
        assert row.reference is not None
        if row.reference not in read:
            read[row.reference] = read_stored(row.reference)
        references.append(read[row.reference])
    return images, references


def loop_context_of(version: ModelVersion) -> tuple[int | None, float | None]:
    """The loop context the version was trained and measured with (its config): the window
    (None: per-frame probabilities as the network gives them) and the key-frame peak ratio."""
    model = version.model_settings
    window, ratio = model.get("loop_context_window"), model.get("keyframe_peak_ratio")
    window = int(window) if isinstance(window, int) and not isinstance(window, bool) else None
    ratio = float(ratio) if isinstance(ratio, int | float) and not isinstance(ratio, bool) else None
    return window, ratio


class _LoopBuffer:
    """Holds predictions until each loop's last frame is in, then stores the loop's rows,
    with loop context (``inference.ml.keyframe.context``) when the model uses it: frames come
    loop by loop, so at most one loop is held."""

    def __init__(self, version: ModelVersion) -> None:
        self.version = version
        self.window, self.peak_ratio = loop_context_of(version)
        self.rows: list[FrameRow] = []
        self.probabilities: list[np.ndarray] = []

    def add(self, rows: list[FrameRow], probabilities: np.ndarray) -> None:
        self.rows.extend(rows)
        self.probabilities.extend(probabilities)
        last_loop = self.rows[-1].loop_id
        complete = next((i for i, row in enumerate(self.rows) if row.loop_id == last_loop), len(self.rows))
        self._store(complete)

    def flush(self) -> None:
        self._store(len(self.rows))

    def _store(self, count: int) -> None:
        if not count:
            return
        rows, probabilities = self.rows[:count], np.asarray(self.probabilities[:count])
        del self.rows[:count], self.probabilities[:count]
        if self.window is not None:
            from inference.ml.keyframe.context import with_loop_context

            loops = [row.loop_id for row in rows]
            indices = [row.frame_index for row in rows]
            probabilities = with_loop_context(probabilities, loops, indices, self.window, self.peak_ratio)
        _store(self.version, [row.pk for row in rows], np.asarray(probabilities, dtype=np.float64))


def prelabel_exams(
    exams: Iterable[Exam],
    version: ModelVersion,
    *,
    batch_size: int = 64,
    frames: FrameChoice = "all",
    progress: ProgressCallback | None = None,
    predictor: Predictor | None = None,
) -> int:
    """Run ``version`` over the frames of ``exams`` (every frame, or the sampled ones) and
    store one PreLabel per frame: the six probabilities, their entropy and margin. An earlier
    pre-label of the same frame by the same version is replaced. Returns the number of frames.

    Frames go through in batches of ``batch_size``, exam after exam; the next batch's images
    are read from storage on a thread while the model works on the current one, so at most two
    batches of image bytes are held. A model trained with loop context has its probabilities
    stored with it (laterality from the whole loop, category from neighbouring frames), as it
    was measured. ``progress`` hears after every batch. ``predictor`` (a loaded
    ``KeyframePredictor``) saves loading the weights again when the caller has them.
    """
    exam_list = exams if isinstance(exams, Sequence) else list(exams)
    total = count_frames(exam_list, frames) if progress else 0
    model = predictor if predictor is not None else cast(Predictor, load_predictor(version))
    done = 0
    buffer = _LoopBuffer(version)
    batches = _batches(exam_list, frames, batch_size, with_reference=bool(version.model_settings.get("loop_reference")))
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="prelabel-read") as reader:
        current = next(batches, None)
        pending = reader.submit(_read_batch, current) if current is not None else None
        while current is not None and pending is not None:
            images, references = pending.result()
            following = next(batches, None)
            pending = reader.submit(_read_batch, following) if following is not None else None
            probabilities = np.asarray(
                model.predict(images, batch_size=batch_size, references=references), dtype=np.float64
            )
            if probabilities.shape != (len(current), len(SIX_CLASSES)):
                raise PrelabelError(
                    f"The model returned {probabilities.shape} probabilities for {len(current)} frames."
                )
            buffer.add(current, probabilities)
            done += len(current)
            if progress:
                progress(done, total)
            current = following
    buffer.flush()
    return done


def _store(version: ModelVersion, frame_ids: list[int], probabilities: np.ndarray) -> None:
    entropy, margin = entropy_and_margin(probabilities)
    rows = [
        PreLabel(
            frame_id=frame_id,
            model_version=version,
            probabilities={name: round(float(p), DECIMALS) for name, p in zip(SIX_CLASSES, row, strict=True)},
            entropy=float(row_entropy),
            margin=float(row_margin),
        )
        for frame_id, row, row_entropy, row_margin in zip(frame_ids, probabilities, entropy, margin, strict=True)
    ]
    # An upsert on (frame, model version): replaces a previous run's prediction in place, and
    # two jobs over one exam cannot trip over each other's rows.
    PreLabel.objects.bulk_create(
        rows,
        update_conflicts=True,
        unique_fields=["frame", "model_version"],
        update_fields=["probabilities", "entropy", "margin", "updated_at"],
    )


# --- resolving what a job works on -----------------------------------------------------------


def resolve_model_version(model_version: UUID | None) -> ModelVersion:
    """The named version, else the active key-frame CNN; PrelabelError when there is none."""
    if model_version is not None:
        version = ModelVersion.objects.filter(uuid=model_version).first()
        if version is None:
            raise PrelabelError(f"There is no model version {model_version}.")
        return version
    version = active_version(ModelKind.KEYFRAME_CNN)
    if version is None:
        raise PrelabelError(
            "No key-frame model is active: train one (manage.py train_keyframe or the Models page) and activate "
            "it, or name a model version to use."
        )
    return version


def resolve_exams(exam_uuids: Sequence[UUID], version: ModelVersion) -> QuerySet[Exam]:
    """The named exams (PrelabelError names any that do not exist); none named: every exam
    with frames that ``version`` has not pre-labelled yet."""
    if exam_uuids:
        exams = Exam.objects.filter(uuid__in=exam_uuids).order_by("created_at", "pk")
        missing = set(exam_uuids) - set(exams.values_list("uuid", flat=True))
        if missing:
            raise PrelabelError("No such exam: " + ", ".join(sorted(str(uuid) for uuid in missing)))
        return exams
    has_frames = Frame.objects.filter(loop__exam=OuterRef("pk"))
    prelabelled = PreLabel.objects.filter(frame__loop__exam=OuterRef("pk"), model_version=version)
    return Exam.objects.filter(Exists(has_frames), ~Exists(prelabelled)).order_by("created_at", "pk")


# --- the job ---------------------------------------------------------------------------------


@register_runner(JobKind.PRELABEL, PrelabelParameters)
def run_prelabel_job(ctx: JobContext) -> dict[str, Any]:
    """Pre-label the chosen exams with the chosen (or active) model, then pick each exam's key
    frames. Metrics: frames, key frames, key frames per exam, speed, and per exam."""
    params = cast(PrelabelParameters, ctx.parameters)
    version = resolve_model_version(params.model_version)
    exams = list(resolve_exams(params.exams, version))
    total = count_frames(exams, params.frames)
    ctx.log(f"Model {version.label} ({version.uuid}); {len(exams)} exam(s), {total} frame(s) ({params.frames}).")
    ctx.progress(0.0, f"Loading {version.label}")
    predictor = cast(Predictor, load_predictor(version, device=params.device))
    started = time.perf_counter()
    done_before = 0
    per_exam: list[dict[str, Any]] = []
    for position, exam in enumerate(exams, start=1):
        step = f"Exam {position} of {len(exams)}"

        def report(done: int, _total: int, step: str = step, offset: int = done_before) -> None:
            frames_done = offset + done
            ctx.progress(frames_done / total if total else 1.0, f"{step}: {frames_done} of {total} frames pre-labelled")

        count = prelabel_exams(
            [exam], version, batch_size=params.batch_size, frames=params.frames, progress=report, predictor=predictor
        )
        done_before += count
        pick_key_frames(exam, version, params.key_frames)
        key_frames = KeyFrame.objects.filter(exam=exam, excluded_at=None).count()
        per_exam.append({"exam": str(exam.uuid), "frames": count, "key_frames": key_frames})
        ctx.log(f"Exam {exam.uuid}: {count} frame(s) pre-labelled, {key_frames} key frame(s).")
    seconds = time.perf_counter() - started
    key_frame_total = sum(row["key_frames"] for row in per_exam)
    metrics = {
        "model_version": str(version.uuid),
        "model_label": version.label,
        "exams": len(exams),
        "frames": done_before,
        "key_frames": key_frame_total,
        "key_frames_per_exam_mean": round(key_frame_total / len(exams), 3) if exams else 0.0,
        "seconds": round(seconds, 3),
        "frames_per_s": round(done_before / seconds, 2) if seconds > 0 else 0.0,
        "per_exam": per_exam,
    }
    ctx.progress(
        1.0,
        f"{done_before} frames of {len(exams)} exam(s) pre-labelled; {metrics['key_frames_per_exam_mean']} key frames "
        "per exam",
    )
    return metrics


# --- after ingest ----------------------------------------------------------------------------


def exams_ingested(report: IngestReport) -> list[UUID]:
    """The exams that received new loops in an ingest, each once, in the report's order."""
    seen: dict[UUID, None] = {}
    for result in report.results:
        if result.outcome == Outcome.INGESTED and result.loop is not None:
            seen.setdefault(result.loop.exam.uuid, None)
    return list(seen)


def start_prelabel_after_ingest(report: IngestReport, user: User | None) -> Job | None:
    """Queue a pre-labelling job for the exams an ingest added to, when a key-frame model is
    active; None (ingest stays as it was) when none is, or nothing new was ingested. The job
    names the model it was queued for: an activation in between does not change what it
    runs."""
    exam_uuids = exams_ingested(report)
    if not exam_uuids:
        return None
    version = active_version(ModelKind.KEYFRAME_CNN)
    if version is None:
        return None
    parameters = PrelabelParameters.model_validate({"exams": exam_uuids, "model_version": version.uuid})
    return start_job(JobKind.PRELABEL, parameters, user)
