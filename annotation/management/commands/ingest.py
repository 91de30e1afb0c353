from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.ingest import Outcome, ingest_paths
from inference.prelabel import start_prelabel_after_ingest


class Command(BaseCommand):
    help = (
        "Ingest X-ray angiography DICOM files, folders and zip archives: de-identify, store, derive "
        "frames and sample them for annotation. Prints one line per file; exits non-zero if any was rejected."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("paths", nargs="+", type=Path, help="DICOM files, folders or .zip archives")

    def handle(self, *args: object, paths: list[Path], **options: object) -> None:
        report = ingest_paths(paths)
        style = {
            Outcome.INGESTED: self.style.SUCCESS,
            Outcome.DUPLICATE: self.style.WARNING,
            Outcome.REJECTED: self.style.ERROR,
            Outcome.SKIPPED: self.style.NOTICE,
        }
        for result in report.results:
            self.stdout.write(style[result.outcome](result.line))
        self.stdout.write(report.summary)
        # New exams go to the active key-frame model, when there is one: queued for the task
        # worker, as an upload in the browser does.
        job = start_prelabel_after_ingest(report, None)
        if job is not None:
            self.stdout.write(
                f"Pre-labelling job {job.uuid} queued for {len(job.parameters.get('exams', []))} exam(s) with the "
                "active key-frame model; a task worker (manage.py db_worker) runs it."
            )
        if not report.ok:
            raise CommandError(f"{report.count(Outcome.REJECTED)} file(s) rejected", returncode=1)
