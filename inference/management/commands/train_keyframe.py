from __future__ import annotations

import sys
import time
from argparse import BooleanOptionalAction
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser
from pydantic import ValidationError

from inference.parameters import CPU_RECIPE, TrainKeyframeParameters
from inference.parameters import TRAINING_RECIPES as RECIPES

_DEFAULTS = TrainKeyframeParameters()
BAR_WIDTH = 30
FOLLOW_INTERVAL_S = 1.0


def format_metrics_line(metrics: dict[str, Any]) -> str:
    """The command's last line: headline test metrics, the version number and the snapshot."""
    from inference.training import headline_metrics

    parts = [headline_metrics(metrics)]
    parts.append(f"model_version={metrics.get('model_version_number', '?')}")
    parts.append(f"snapshot={metrics.get('snapshot', '?')}")
    return " ".join(parts)


class _ProgressBar:
    """One line on stderr, redrawn in place on a terminal and printed on change otherwise."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.last = ""
        self.started = time.monotonic()

    def __call__(self, job: Any) -> None:
        filled = round(job.progress * BAR_WIDTH)
        elapsed = time.monotonic() - self.started
        line = f"[{'#' * filled}{'.' * (BAR_WIDTH - filled)}] {job.progress * 100:5.1f}% {elapsed:6.0f}s {job.step}"
        if line == self.last:
            return
        self.last = line
        if self.tty:
            self.stream.write("\r" + line[:160].ljust(160))
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.last:
            self.stream.write("\n")
            self.stream.flush()


class Command(BaseCommand):
    help = (
        "Train the key-frame CNN as a job in this process (build a dataset snapshot from the final labels unless "
        "--snapshot names one), register the model version and print its test metrics. Defaults follow the study."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--recipe",
            choices=sorted(RECIPES),
            default="study",
            help="the defaults the other flags override: the study's (ConvNeXt-Base, 224 px, 200 epochs; needs a "
            "GPU) or the CPU recipe tested on the phantom (default %(default)s)",
        )
        parser.add_argument("--arch", help=f"timm ConvNeXt name (study: {_DEFAULTS.arch})")
        parser.add_argument("--image-size", type=int, help=f"pixels (study: {_DEFAULTS.image_size})")
        parser.add_argument("--epochs", type=int, help=f"(study: {_DEFAULTS.epochs})")
        parser.add_argument("--batch-size", type=int, help=f"(study: {_DEFAULTS.batch_size})")
        parser.add_argument(
            "--micro-batch-size",
            type=int,
            help="largest batch through the network at once; gradient accumulation makes up the batch",
        )
        parser.add_argument("--lr", type=float, help=f"AdamW learning rate (study: {_DEFAULTS.lr})")
        parser.add_argument("--seed", type=int, help=f"(default {_DEFAULTS.seed})")
        parser.add_argument("--patience", type=int, help=f"early-stopping epochs (study: {_DEFAULTS.patience})")
        parser.add_argument("--snapshot", type=UUID, help="train on this dataset snapshot (UUID)")
        parser.add_argument(
            "--split-by", choices=["exam", "loop"], help=f"how a new snapshot is split (default {_DEFAULTS.split_by})"
        )
        parser.add_argument(
            "--activate", action="store_true", default=None, help="activate the new version when trained"
        )
        parser.add_argument(
            "--no-augment", dest="augment", action="store_false", default=None, help="train without augmentation"
        )
        parser.add_argument(
            "--augmentation",
            choices=["trivial_augment_wide", "mild"],
            help=f"(study: {_DEFAULTS.augmentation}; cpu: {CPU_RECIPE['augmentation']})",
        )
        parser.add_argument(
            "--selection-metric",
            choices=["val_loss", "val_macro_f1", "val_keyframe_f1"],
            help=f"validation score that keeps the best epoch and stops early (study: {_DEFAULTS.selection_metric})",
        )
        parser.add_argument("--label-smoothing", type=float, help=f"(study: {_DEFAULTS.label_smoothing})")
        parser.add_argument(
            "--epoch-fraction", type=float, help=f"share of the training frames per epoch (study: 1; cpu: "
            f"{CPU_RECIPE['epoch_fraction']})",
        )  # fmt: skip
        parser.add_argument(
            "--tune-keyframe-threshold",
            action=BooleanOptionalAction,
            help="choose the key-frame threshold (and, with loop context, the peak ratio) on the validation split",
        )
        context = parser.add_mutually_exclusive_group()
        context.add_argument(
            "--loop-context-window",
            type=int,
            help=f"loop context: category over this many frames each side (cpu: {CPU_RECIPE['loop_context_window']})",
        )
        context.add_argument("--no-loop-context", action="store_true", help="each frame on its own")
        parser.add_argument(
            "--loop-reference",
            action=BooleanOptionalAction,
            help="a second input channel with the loop's minimum projection (study: off; cpu: "
            f"{'on' if CPU_RECIPE.get('loop_reference') else 'off'})",
        )
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"])

    def handle(self, *args: object, **options: Any) -> None:
        from inference.jobs import JobConflict, run_job_here, start_job
        from inference.models import JobKind, JobStatus

        given = {name: options[name] for name in TrainKeyframeParameters.model_fields if options.get(name) is not None}
        if options["no_loop_context"]:
            given["loop_context_window"] = None
        try:
            params = TrainKeyframeParameters.model_validate(RECIPES[options["recipe"]] | given)
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in exc.errors())
            ) from None

        try:
            job = start_job(JobKind.TRAIN_KEYFRAME, params, user=None)
        except JobConflict as exc:
            raise CommandError(str(exc)) from None
        stderr = getattr(self.stderr, "_out", sys.stderr)
        stderr.write(f"Training job {job.uuid}\n")
        bar = _ProgressBar(stderr)
        try:
            job = run_job_here(job, on_progress=bar)
            # start_job also queued the job's task: a worker running beside this command may
            # have claimed it first. Then follow it there instead.
            while job.is_active:
                time.sleep(FOLLOW_INTERVAL_S)
                job.refresh_from_db()
                bar(job)
        finally:
            bar.close()
        job.refresh_from_db()
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Training job {job.uuid} {job.status}: {job.error or 'no reason recorded'}")
        self.stdout.write(format_metrics_line(job.metrics))
