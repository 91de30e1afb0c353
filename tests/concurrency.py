"""Races between real threads, each with its own database connection."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.db import connection

THREAD_TIMEOUT_S = 60


def at_the_same_moment(*calls: Callable[[], Any]) -> list[Any]:
    """Run each call in its own thread, released together; the result or exception of each."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(position: int, call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=THREAD_TIMEOUT_S)
            results[position] = call()
        except Exception as exc:
            results[position] = exc
        finally:
            # Each thread has its own connection; close it, or the test database cannot be
            # dropped at the end of the run.
            connection.close()

    threads = [threading.Thread(target=run, args=(position, call)) for position, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=THREAD_TIMEOUT_S)
        assert not thread.is_alive(), "a racing thread hung"
    return results
