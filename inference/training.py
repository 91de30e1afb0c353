"""The training job of the key-frame CNN: snapshot in, registered model version out.

The runner is what a worker, ``manage.py train_keyframe`` and the tests all run (through
``inference.jobs``). It trains on a given snapshot or freezes the current final labels into a
new one, hands the frames to the trainer (``inference.ml.keyframe``, imported here, inside the
runner, so that importing this module costs no torch), registers the result as a ModelVersion
with its test metrics and plots, and activates it when asked (the first version of a kind
always is).

Resume: a resumed job gets its predecessor's checkpoint folder; the trainer continues from the
last epoch saved there, and the runner reads back the snapshot the failed job chose (recorded
in the same folder) so that the resumed run trains on the same frames.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings

from inference.datasets import SPLITS, ManifestEntry, build_snapshot, load_manifest, read_frame_image
from inference.jobs import JobContext, register_runner
from inference.models import DatasetSnapshot, JobKind, ModelKind
from inference.parameters import TrainKeyframeParameters
from inference.references import loop_references_by_uuid
from inference.registry import activate, active_version, register_model_version

if TYPE_CHECKING:
    from inference.ml.keyframe.data import ImageItem

EXCLUSIVE_KEY = f"train:{ModelKind.KEYFRAME_CNN.value}"
#: The file in the checkpoint folder that names the snapshot the job trains on.
SNAPSHOT_RECORD = "snapshot.json"
#: The part of the job's progress bar the trainer fills (the rest: snapshot, registration).
TRAINING_SPAN = (0.05, 0.95)
#: Test metrics printed by the command and shown first on the model pages.
HEADLINE_METRICS = ("laterality_f1", "keyframe_f1", "keyframe_auroc", "macro_f1", "ece")


def headline_metrics(metrics: dict[str, Any]) -> str:
    """``laterality_f1=0.970 keyframe_f1=0.910 ...``: the headline test metrics as the job log
    and ``train_keyframe`` print them. A metric the test split cannot define (AUROC when it
    holds one class) is ``None`` and prints as ``n/a``."""
    return " ".join(
        f"{name}={'n/a' if metrics.get(name) is None else format(float(metrics[name]), '.3f')}"
        for name in HEADLINE_METRICS
    )


class _TrainingProgress:
    """The job context as the trainer's ``TrainingReporter``: its 0-1 progress maps onto the
    training part of the job's progress."""

    def __init__(self, ctx: JobContext, start: float, end: float) -> None:
        self.ctx, self.start, self.end = ctx, start, end

    def progress(self, fraction: float, step: str | None = None, metrics: dict | None = None) -> None:
        fraction = min(max(fraction, 0.0), 1.0)
        self.ctx.progress(self.start + (self.end - self.start) * fraction, step, metrics)

    def log(self, line: str) -> None:
        self.ctx.log(line)

    def check_cancelled(self) -> None:
        self.ctx.check_cancelled()


def snapshot_for_job(ctx: JobContext, params: TrainKeyframeParameters) -> DatasetSnapshot:
    """The snapshot named in the parameters, the one this job (or the job it resumes) already
    chose, or a new one built now from the final labels."""
    if params.snapshot is not None:
        return DatasetSnapshot.objects.get(uuid=params.snapshot)
    record = Path(ctx.checkpoint_dir) / SNAPSHOT_RECORD
    if record.is_file():
        chosen = json.loads(record.read_text(encoding="utf-8"))["snapshot"]
        snapshot = DatasetSnapshot.objects.filter(uuid=chosen).first()
        if snapshot is not None:
            ctx.log(f"Continuing on snapshot {snapshot.name} ({snapshot.uuid}).")
            return snapshot
    snapshot = build_snapshot(
        name=f"Training job {str(ctx.job.uuid)[:8]}",
        seed=params.seed,
        validation_fraction=params.validation_fraction,
        test_fraction=params.test_fraction,
        split_by=params.split_by,
        user=ctx.job.created_by,
    )
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"snapshot": str(snapshot.uuid)}), encoding="utf-8")
    ctx.log(f"Built snapshot {snapshot.name} ({snapshot.frame_count} frames, {snapshot.uuid}).")
    return snapshot


def image_items(entries: list[ManifestEntry], references: dict[str, bytes] | None = None) -> list[ImageItem]:
    """The trainer's items for manifest entries; ``references``: each loop's minimum projection
    by loop UUID, for a model that reads it."""
    from inference.ml.keyframe.config import CLASS_NAMES
    from inference.ml.keyframe.data import ImageItem

    return [
        ImageItem(
            key=str(entry.frame),
            label=CLASS_NAMES.index(entry.label),
            load=functools.partial(read_frame_image, entry),
            loop=str(entry.loop),
            index=entry.index,
            reference=functools.partial(references.__getitem__, str(entry.loop)) if references is not None else None,
        )
        for entry in entries
    ]


def init_weights_path() -> Path | None:
    configured = getattr(settings, "CAGVLM_KEYFRAME_INIT_WEIGHTS", None)
    return Path(configured) if configured else None


@register_runner(JobKind.TRAIN_KEYFRAME, TrainKeyframeParameters, exclusive_key=EXCLUSIVE_KEY)
def train_keyframe_job(ctx: JobContext) -> dict[str, Any]:
    """Train, evaluate, register (and maybe activate) a key-frame CNN; return the test
    metrics with the new version and its snapshot (stored in ``Job.metrics``)."""
    from inference.ml.keyframe.trainer import train_keyframe_model

    params = ctx.parameters
    assert isinstance(params, TrainKeyframeParameters)
    ctx.progress(0.0, "Preparing the dataset snapshot")
    snapshot = snapshot_for_job(ctx, params)
    manifest = load_manifest(snapshot)
    references = None
    if params.loop_reference:
        ctx.progress(0.0, "Making the loops' minimum projections")
        references = loop_references_by_uuid(entry.loop for entry in manifest.entries)
    splits = {split: image_items(manifest.split(split), references) for split in SPLITS}
    ctx.log(
        "Frames: "
        + ", ".join(f"{split} {len(items)}" for split, items in splits.items())
        + f" (snapshot {snapshot.uuid})"
    )
    ctx.progress(TRAINING_SPAN[0], "Training")

    result = train_keyframe_model(
        params,
        splits["train"],
        splits["validation"],
        splits["test"],
        checkpoint_dir=Path(ctx.checkpoint_dir),
        reporter=_TrainingProgress(ctx, *TRAINING_SPAN),
        init_weights=init_weights_path(),
    )

    ctx.progress(TRAINING_SPAN[1], "Registering the model version")
    version = register_model_version(
        kind=ModelKind.KEYFRAME_CNN,
        architecture=params.arch,
        config={"model": result.model_config.model_dump(mode="json"), "training": params.model_dump(mode="json")},
        weights=result.weights,
        snapshot=snapshot,
        metrics={"test": result.metrics, "history": result.history},
        artifacts=result.plots,
        job=ctx.job,
        user=ctx.job.created_by,
    )
    if params.activate or active_version(ModelKind.KEYFRAME_CNN) is None:
        version = activate(version, ctx.job.created_by)
    ctx.log(
        f"Registered {version}" + (" (active)" if version.is_active else "") + ": " + headline_metrics(result.metrics)
    )
    summary = {
        **result.metrics,
        "model_version": str(version.uuid),
        "model_version_number": version.version,
        "snapshot": str(snapshot.uuid),
        "activated": version.is_active,
    }
    ctx.progress(1.0, f"Registered {version.label}")
    return summary
