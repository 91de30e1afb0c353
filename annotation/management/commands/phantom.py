from __future__ import annotations

import os
import time
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError, CommandParser


class Command(BaseCommand):
    help = (
        "Write synthetic coronary angiography exams (XA multi-frame DICOM) with a ground-truth JSON per exam: "
        "frame labels, findings, bilingual reports and generation parameters. Deterministic for a seed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--exams", type=int, required=True, help="number of exams")
        parser.add_argument("--seed", type=int, default=0, help="cohort seed (same seed, same bytes)")
        parser.add_argument("--out", type=Path, required=True, help="output folder (one subfolder per exam)")
        parser.add_argument(
            "--workers",
            type=int,
            default=min(4, os.cpu_count() or 1),
            help="parallel processes (exams are independent)",
        )

    def handle(self, *args: object, exams: int, seed: int, out: Path, workers: int, **options: object) -> None:
        # Imported here: numpy-heavy generation code stays out of Django's start-up.
        from annotation.phantom.generate import generate_cohort

        if exams < 1:
            raise CommandError("--exams must be at least 1")
        start = time.perf_counter()
        paths = generate_cohort(exams, seed, out, workers=workers)
        for path in paths:
            self.stdout.write(str(path))
        self.stdout.write(
            self.style.SUCCESS(
                f"{len(paths)} phantom exams in {out} ({time.perf_counter() - start:.1f} s, seed {seed})"
            )
        )
