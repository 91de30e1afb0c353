from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from annotation.phantom.montage import build_montage


class Command(BaseCommand):
    help = (
        "Render a contact sheet of phantom cine frames: the standard LCA and RCA views (rows) at "
        "early, peak and late contrast (columns). --real adds a row of a real cine for comparison; "
        "that version holds real pixels and is refused inside the project."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--out", type=Path, required=True, help="PNG file to write")
        parser.add_argument("--seed", type=int, default=0, help="phantom patient seed")
        parser.add_argument("--real", type=Path, help="a real XA cine (DICOM) to show beside the phantom")
        parser.add_argument("--tile", type=int, default=256, help="tile size in pixels")

    def handle(self, *args: object, out: Path, seed: int, real: Path | None, tile: int, **options: object) -> None:
        if real is not None:
            if not real.is_file():
                raise CommandError(f"{real} is not a file")
            project = Path(settings.BASE_DIR).resolve()
            # Real pixels must never land in the repository (or its docs).
            if out.resolve().is_relative_to(project):
                raise CommandError(f"a montage with real frames must be written outside {project}")
        sheet = build_montage(seed=seed, real=real, tile_px=tile)
        out.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(out, optimize=True)
        self.stdout.write(self.style.SUCCESS(f"wrote {out} ({sheet.width}x{sheet.height})"))
