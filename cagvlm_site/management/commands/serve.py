"""Run the product: the ASGI server (HTTP and websockets) and a task worker, together.

Both run as child processes; Ctrl-C (or SIGTERM) stops both, and if either exits the other is
stopped too, so a half-running product never hides behind a live web page.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time

from django.core.management.base import BaseCommand, CommandParser


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
        try:
            while all(child.poll() is None for child in children):
                time.sleep(0.5)
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
