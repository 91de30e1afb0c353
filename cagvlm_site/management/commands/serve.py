"""Run the product: the ASGI server (HTTP and websockets) and a task worker, together.

Both run as child processes; Ctrl-C (or SIGTERM) stops both, and if either exits the other is
stopped too, so a half-running product never hides behind a live web page. Every 30 s the
supervisor also marks failed the jobs whose worker died (``inference.jobs.reap_stale_jobs``).
"""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand, CommandParser
from django.db import connection

from inference.jobs import reap_stale_jobs

logger = logging.getLogger(__name__)

#: Seconds between two looks for jobs whose worker stopped sending heartbeats.
REAP_INTERVAL_S = 30


class Command(BaseCommand):
    help = "Start the ASGI server (daphne) and a task worker (db_worker) and supervise both."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--workers", type=int, default=1, help="number of task worker processes")

    def handle(self, *args: object, host: str, port: int, workers: int, **options: object) -> None:
        python = sys.executable
        commands = [
            [python, "-m", "daphne", "-b", host, "-p", str(port), "cagvlm_site.asgi:application"],
            *([python, "manage.py", "db_worker"] for _ in range(workers)),
        ]
        children = [subprocess.Popen(command) for command in commands]  # noqa: S603 - our own argv
        self.stdout.write(self.style.SUCCESS(f"Serving on http://{host}:{port}/ with {workers} task worker(s)"))

        def stop(*_: object) -> None:
            for child in children:
                if child.poll() is None:
                    child.terminate()

        signal.signal(signal.SIGTERM, stop)
        next_reap = time.monotonic() + REAP_INTERVAL_S
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
                if time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + REAP_INTERVAL_S
                    self.reap()
        except KeyboardInterrupt:
            pass
        finally:
            stop()
            for child in children:
                try:
                    child.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    child.kill()
        failed = [c for c in children if c.returncode not in (0, -signal.SIGTERM, None)]
        if failed:
            raise SystemExit(failed[0].returncode)

    def reap(self) -> None:
        """Fail the jobs of dead workers; a database hiccup must not stop the product."""
        try:
            for job in reap_stale_jobs():
                self.stderr.write(f"Job {job.uuid} failed: {job.error}")
        except Exception:
            logger.exception("Looking for jobs of dead workers failed")
        finally:
            # Between looks the supervisor holds no connection (PostgreSQL's pool gets it back).
            connection.close()
