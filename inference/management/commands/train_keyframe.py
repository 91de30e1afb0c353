from __future__ import annotations

import sys
import time
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser
from pydantic import ValidationError

from inference.parameters import TrainKeyframeParameters

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
        parser.add_argument("--arch", default=_DEFAULTS.arch, help="timm ConvNeXt name (default %(default)s)")
        parser.add_argument("--image-size", type=int, default=_DEFAULTS.image_size, help="pixels (default %(default)s)")
        parser.add_argument("--epochs", type=int, default=_DEFAULTS.epochs, help="(default %(default)s)")
        parser.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="(default %(default)s)")
        parser.add_argument(
            "--micro-batch-size",
            type=int,
            default=_DEFAULTS.micro_batch_size,
            help="largest batch through the network at once; gradient accumulation makes up the batch",
        )
        parser.add_argument("--lr", type=float, default=_DEFAULTS.lr, help="AdamW learning rate (default %(default)s)")
        parser.add_argument("--seed", type=int, default=_DEFAULTS.seed, help="(default %(default)s)")
        parser.add_argument(
            "--patience", type=int, default=_DEFAULTS.patience, help="early-stopping epochs (default %(default)s)"
        )
        parser.add_argument("--snapshot", type=UUID, default=None, help="train on this dataset snapshot (UUID)")
        parser.add_argument(
            "--split-by",
            choices=["exam", "loop"],
            default=_DEFAULTS.split_by,
            help="how a new snapshot is split (default %(default)s)",
        )
        parser.add_argument("--activate", action="store_true", help="activate the new version when trained")
        parser.add_argument("--no-augment", action="store_true", help="train without TrivialAugmentWide")
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=_DEFAULTS.device)

    def handle(self, *args: object, **options: Any) -> None:
        from inference.jobs import JobConflict, run_job_here, start_job
        from inference.models import JobKind, JobStatus

        try:
            params = TrainKeyframeParameters(
                arch=options["arch"],
                image_size=options["image_size"],
                epochs=options["epochs"],
                batch_size=options["batch_size"],
                micro_batch_size=options["micro_batch_size"],
                lr=options["lr"],
                seed=options["seed"],
                patience=options["patience"],
                snapshot=options["snapshot"],
                split_by=options["split_by"],
                activate=options["activate"],
                augment=not options["no_augment"],
                device=options["device"],
            )
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
