"""Mark failed the running jobs whose worker stopped sending heartbeats (it died).

``manage.py serve`` does this every 30 s and the jobs pages on every visit; this command is for
deployments that run workers on their own (cron, a systemd timer) and for scripts.
"""

from __future__ import annotations

from datetime import timedelta

from django.core.management.base import BaseCommand, CommandParser

from inference.jobs import reap_stale_jobs


class Command(BaseCommand):
    help = "Mark failed the running jobs whose heartbeat is older than the timeout."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--timeout",
            type=float,
            default=None,
            help="seconds without a heartbeat before a job counts as dead "
            "(default: settings.CAGVLM_JOBS['HEARTBEAT_TIMEOUT'])",
        )

    def handle(self, *args: object, timeout: float | None, **options: object) -> None:
        reaped = reap_stale_jobs(timedelta(seconds=timeout) if timeout is not None else None)
        for job in reaped:
            self.stdout.write(f"{job.uuid} {job.kind}: {job.error}")
        self.stdout.write(self.style.SUCCESS(f"{len(reaped)} stale job(s) marked failed."))
