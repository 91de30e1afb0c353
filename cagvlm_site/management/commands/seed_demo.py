"""Demo data for ``make run``: one user per role, and exams when the database has none.

Users get random passwords the first time; they are kept in ``var/demo-credentials.txt``
(readable by the owner only) and printed on every run, so a second run reuses what exists.
"""

from __future__ import annotations

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

    def handle(self, *args: object, samples: Path, **options: object) -> None:
        credentials = self._ensure_users()
        if Exam.objects.exists():
            self.stdout.write(f"{Exam.objects.count()} exams already present; nothing ingested.")
        elif samples.is_dir():
            self.stdout.write(f"Ingesting the real XA samples in {samples} ...")
            report = ingest_paths([samples])
            self.stdout.write(report.summary)
        else:
            self.stdout.write(f"No sample folder at {samples}; no exams seeded.")
        self.stdout.write(self.style.SUCCESS("Demo users (user / password / role):"))
        for username, password, role in credentials:
            self.stdout.write(f"  {username:<13} {password:<24} {role.label}")

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
