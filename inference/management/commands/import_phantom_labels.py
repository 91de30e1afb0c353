from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Turn the ground truth the phantom command wrote (PHANTOM_DIR/*/ground_truth.json) into final labels "
        "(method 'phantom') for every frame of the exams already ingested. Idempotent; final labels reached by "
        "physicians are kept."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("phantom_dir", type=Path, help="folder the phantom command wrote (one subfolder per exam)")

    def handle(self, *args: object, phantom_dir: Path, **options: object) -> None:
        from inference.phantom_labels import import_phantom_labels

        if not phantom_dir.is_dir():
            raise CommandError(f"{phantom_dir} is not a folder")
        report = import_phantom_labels(phantom_dir)
        if not report.exams_seen:
            raise CommandError(f"no */ground_truth.json in {phantom_dir}")
        for line in report.lines:
            self.stdout.write(line)
        self.stdout.write(self.style.SUCCESS(report.summary))
