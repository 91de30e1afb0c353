"""Demo data for ``make run``: one user per role, and exams when the database has none
(the real samples in ../shared/fixtures/xa when present, and a small phantom cohort with its
bilingual reports).

Users get random passwords the first time; they are kept in ``var/demo-credentials.txt``
(readable by the owner only) and printed on every run, so a second run reuses what exists.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from annotation.ingest import ingest_paths
from annotation.models import Exam
from cagvlm_site.roles import Role

DEMO_USERS = {
    Role.PHYSICIAN: "physician",
    Role.CARDIOLOGIST: "cardiologist",
    Role.ADMIN: "admin",
}


class Command(BaseCommand):
    help = "Create one demo user per role and, if there are no exams yet, ingest the demo exams."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--samples",
            type=Path,
            default=settings.BASE_DIR.parent / "shared" / "fixtures" / "xa",
            help="folder of real XA samples to ingest when the database has no exams",
        )
        parser.add_argument("--phantom-exams", type=int, default=3, help="phantom exams to generate and ingest")
        parser.add_argument("--phantom-seed", type=int, default=2025)

    def handle(self, *args: object, samples: Path, phantom_exams: int, phantom_seed: int, **options: object) -> None:
        credentials = self._ensure_users()
        if Exam.objects.exists():
            self.stdout.write(f"{Exam.objects.count()} exams already present; nothing ingested.")
        else:
            if samples.is_dir():
                self.stdout.write(f"Ingesting the real XA samples in {samples} ...")
                self.stdout.write(ingest_paths([samples]).summary)
            else:
                self.stdout.write(f"No sample folder at {samples}; no real samples seeded.")
            if phantom_exams > 0:
                self._seed_phantom(phantom_exams, phantom_seed)
        self.stdout.write(self.style.SUCCESS("Demo users (user / password / role):"))
        for username, password, role in credentials:
            self.stdout.write(f"  {username:<13} {password:<24} {role.label}")

    def _seed_phantom(self, exams: int, seed: int) -> None:
        # Imported here: the phantom's numpy-heavy code stays out of every other command.
        from annotation.phantom.generate import generate_cohort
        from annotation.phantom.load import load_phantom_cohort

        folder = Path(settings.VAR_DIR) / "phantom" / f"seed-{seed}"
        if len(list(folder.glob("*/ground_truth.json"))) < exams:
            self.stdout.write(f"Generating {exams} phantom exams (seed {seed}) in {folder} ...")
            generate_cohort(exams, seed, folder, workers=min(exams, os.cpu_count() or 1))
        from inference.phantom_labels import import_phantom_labels

        frames = 0
        for report, _exam in load_phantom_cohort(folder):
            frames += report.frames_ingested
        self.stdout.write(f"Phantom exams ingested with their reports ({frames} frames).")
        # Their ground truth becomes final labels (method "phantom"), so an admin can train the
        # key-frame CNN in the demo without labelling first.
        labels = import_phantom_labels(folder)
        self.stdout.write(f"Phantom ground truth imported as final labels ({labels.created} frames).")

    def _ensure_users(self) -> list[tuple[str, str, Role]]:
        store = Path(settings.VAR_DIR) / "demo-credentials.txt"
        known: dict[str, str] = {}
        if store.exists():
            for line in store.read_text(encoding="utf-8").splitlines():
                username, _, password = line.partition(" ")
                known[username] = password
        rows = []
        with transaction.atomic():
            for role, username in DEMO_USERS.items():
                user = User.objects.filter(username=username).first()
                if user is None or username not in known:
                    known[username] = secrets.token_urlsafe(12)
                    user = user or User(username=username)
                    user.set_password(known[username])
                    # The demo admin also manages users in the Django admin.
                    user.is_staff = user.is_superuser = role is Role.ADMIN
                    user.save()
                user.groups.add(Group.objects.get_or_create(name=role.value)[0])
                rows.append((username, known[username], role))
        store.parent.mkdir(parents=True, exist_ok=True)
        store.write_text("".join(f"{u} {p}\n" for u, p, _ in rows), encoding="utf-8")
        store.chmod(0o600)
        return rows
