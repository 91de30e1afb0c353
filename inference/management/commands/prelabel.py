from __future__ import annotations

import sys
from typing import Any
from uuid import UUID

from django.core.management.base import BaseCommand, CommandError, CommandParser
from pydantic import ValidationError

from inference.parameters import PrelabelParameters

_DEFAULTS = PrelabelParameters()


class Command(BaseCommand):
    help = (
        "Pre-label frames with the key-frame CNN and pick the exams' key frames, as a job in this process. "
        "Without --exam or --all: every exam the model has not pre-labelled yet."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        chosen = parser.add_mutually_exclusive_group()
        chosen.add_argument(
            "--exam", type=UUID, action="append", dest="exams", default=[], help="an exam's UUID (repeatable)"
        )
        chosen.add_argument("--all", action="store_true", help="every exam, including those pre-labelled already")
        parser.add_argument(
            "--model-version", type=UUID, default=None, help="the model version's UUID (default: the active one)"
        )
        parser.add_argument("--batch-size", type=int, default=_DEFAULTS.batch_size, help="(default %(default)s)")
        parser.add_argument(
            "--frames",
            choices=["all", "sampled"],
            default=_DEFAULTS.frames,
            help="every frame (key-frame extraction reads them all) or the sampled ones (default %(default)s)",
        )
        parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default=_DEFAULTS.device)

    def handle(self, *args: object, **options: Any) -> None:
        from annotation.models import Exam
        from inference.jobs import run_job_here, start_job
        from inference.management.commands.train_keyframe import _ProgressBar
        from inference.models import JobKind, JobStatus
        from inference.prelabel import PrelabelError, resolve_exams, resolve_model_version

        exams: list[UUID] = options["exams"]
        if options["all"]:
            exams = list(Exam.objects.order_by("created_at", "pk").values_list("uuid", flat=True))
            if not exams:
                raise CommandError("There are no exams to pre-label.")
        try:
            params = PrelabelParameters(
                exams=exams,
                model_version=options["model_version"],
                frames=options["frames"],
                batch_size=options["batch_size"],
                device=options["device"],
            )
        except ValidationError as exc:
            raise CommandError(
                "; ".join(f"{'.'.join(map(str, e['loc'])) or 'parameters'}: {e['msg']}" for e in exc.errors())
            ) from None
        # Refused here, before a job row exists: no model, or an exam that is not there.
        try:
            version = resolve_model_version(params.model_version)
            if not resolve_exams(params.exams, version).exists():
                self.stdout.write(f"Nothing to pre-label: every exam with frames has pre-labels of {version.label}.")
                return
        except PrelabelError as exc:
            raise CommandError(str(exc)) from None
        # The job names the model, so an activation while it runs does not change what it uses.
        params = params.model_copy(update={"model_version": version.uuid})

        job = start_job(JobKind.PRELABEL, params, user=None)
        stderr = getattr(self.stderr, "_out", sys.stderr)
        stderr.write(f"Pre-labelling job {job.uuid} with {version.label}\n")
        bar = _ProgressBar(stderr)
        try:
            job = run_job_here(job, on_progress=bar)
        finally:
            bar.close()
        job.refresh_from_db()
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"Pre-labelling job {job.uuid} {job.status}: {job.error or 'no reason recorded'}")
        metrics = job.metrics
        for row in metrics.get("per_exam", []):
            self.stdout.write(
                f"exam {row['exam']}: {row['frames']} frames pre-labelled, {row['key_frames']} key frames"
            )
        self.stdout.write(
            f"exams={metrics['exams']} frames={metrics['frames']} key_frames={metrics['key_frames']} "
            f"key_frames_per_exam={metrics['key_frames_per_exam_mean']:.2f} "
            f"frames_per_s={metrics['frames_per_s']:.1f} model={metrics['model_label'].replace(' ', '_')}"
        )
