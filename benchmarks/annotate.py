"""Labelling under load: the real ASGI server on loopback, PostgreSQL, 20 physicians at once.

Each simulated physician does what the viewer page does after a key press: PUT the label of
the current frame, then GET the next frame's state, over its own keep-alive connection, for
60 seconds, looking at each frame for 1-2 s in between (``--think``; a brisk reader: a
cardiologist takes longer over a frame, and a closed loop with no pause at all measures only
how far the queue grows, see ``--think 0``). Afterwards every acknowledged label is looked up
in the database ("lost" counts
those that are missing or differ). Targets: p95 under 50 ms, zero errors, zero lost labels.

It also opens a 96-frame loop as the viewer does (the workspace request, then every frame
image, six connections at a time like a browser) and reports the time until all frames are
ready to play (target under 1 s on loopback) and the bytes per frame.

There is no external baseline for a latency target; the ratio-style comparison here is the
per-request latency of the label write against the plain state read measured in the same run.

Usage: ``.venv/bin/python benchmarks/annotate.py [--physicians 20] [--seconds 60]``
(PostgreSQL at BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/cagvlm_bench,
created if missing). Last line:
``p50_ms=.. p95_ms=.. p99_ms=.. rps=.. errors=.. lost=.. loop_ready_s=.. kb_per_frame=..``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
SCRATCH = Path(tempfile.mkdtemp(prefix="cagvlm-bench-annotate-"))
DATABASE_URL = os.environ.get("BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cagvlm_bench")
SERVER_ENV = {
    **os.environ,
    "DATABASE_URL": DATABASE_URL,
    "CAGVLM_VAR_DIR": str(SCRATCH / "var"),
    "DJANGO_DEBUG": "0",
    "LOG_LEVEL": "WARNING",
}
os.environ.update(SERVER_ENV)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cagvlm_site.settings")
FIXTURES = Path(os.environ.get("CAGVLM_XA_FIXTURES", REPO.parent / "shared" / "fixtures" / "xa"))
CSRF = "benchmarkcsrftokenbenchmarkcsrf0"  # 32 characters: a valid unmasked secret


def ensure_database() -> None:
    import psycopg

    parts = urlsplit(DATABASE_URL)
    name = parts.path.lstrip("/")
    admin = DATABASE_URL.rsplit("/", 1)[0] + "/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def prepare(physicians: int) -> tuple[list[str], str, list[str]]:
    """Migrate, ingest frames to label, create physicians with sessions. Returns session keys,
    the 96-frame loop's uuid and the uuids of all frames to label."""
    import django

    django.setup()
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.auth.models import Group, User
    from django.contrib.sessions.backends.db import SessionStore
    from django.core.management import call_command

    from annotation.ingest import ingest_paths
    from annotation.models import CineLoop, Frame

    call_command("migrate", verbosity=0)
    if (FIXTURES / "0002.DCM").exists():
        ingest_paths([FIXTURES / "0002.DCM", FIXTURES / "XA-MONO2-8-12x-catheter.dcm"])
    else:
        from annotation.phantom.generate import generate_exam
        from annotation.phantom.load import load_phantom_exam

        load_phantom_exam(generate_exam(1, 0, SCRATCH / "phantom"))
    loop = CineLoop.objects.filter(frame_count=96).first() or CineLoop.objects.order_by("-frame_count").first()
    group = Group.objects.get_or_create(name="physician")[0]
    sessions = []
    for number in range(physicians):
        user = User.objects.create_user(f"bench{number:02d}", password=None)
        user.groups.add(group)
        session = SessionStore()
        session[SESSION_KEY] = str(user.pk)
        session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
        session[HASH_SESSION_KEY] = user.get_session_auth_hash()
        session.create()
        sessions.append(session.session_key)
    frames = [str(u) for u in Frame.objects.order_by("loop_id", "index").values_list("uuid", flat=True)]
    return sessions, str(loop.uuid), frames


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Client:
    def __init__(self, port: int, session_key: str) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        self.headers = {
            "Cookie": f"sessionid={session_key}; csrftoken={CSRF}",
            "X-CSRFToken": CSRF,
            "Content-Type": "application/json",
            "Referer": f"http://127.0.0.1:{port}/",
        }

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes, float]:
        start = time.perf_counter()
        payload = json.dumps(body) if body is not None else None
        self.connection.request(method, path, body=payload, headers=self.headers)
        response = self.connection.getresponse()
        data = response.read()
        return response.status, data, time.perf_counter() - start


def physician_session(
    port: int, session_key: str, frames: list[str], deadline: float, seed: int, think: tuple[float, float]
) -> dict:
    client = Client(port, session_key)
    rng = random.Random(seed)
    position = rng.randrange(len(frames))
    versions: dict[str, int | None] = {}
    writes, reads, acknowledged, errors = [], [], {}, {}
    time.sleep(rng.uniform(0, think[1]))  # physicians do not all start on the same beat
    while time.perf_counter() < deadline:
        time.sleep(rng.uniform(*think))
        frame = frames[position % len(frames)]
        label = {
            "laterality": rng.choice(["LCA", "RCA"]),
            "category": rng.choice(["better", "bad", "other"]),
            "note": "",
            "seconds_spent": round(rng.uniform(0.5, 4.0), 2),
            "version": versions.get(frame),
        }
        status, data, seconds = client.request("PUT", f"/api/frames/{frame}/my-label/", label)
        writes.append(seconds)
        if status == 200:
            state = json.loads(data)
            versions[frame] = state["my_label"]["version"]
            acknowledged[frame] = (label["laterality"], label["category"])
        else:
            errors[f"PUT {status}"] = errors.get(f"PUT {status}", 0) + 1
        position += 1
        status, data, seconds = client.request("GET", f"/api/frames/{frames[position % len(frames)]}/state/")
        reads.append(seconds)
        if status == 200:
            label_now = json.loads(data)["my_label"]
            versions[frames[position % len(frames)]] = label_now["version"] if label_now else None
        else:
            errors[f"GET {status}"] = errors.get(f"GET {status}", 0) + 1
    return {"writes": writes, "reads": reads, "acknowledged": acknowledged, "errors": errors}


def loop_ready(port: int, session_key: str, loop_uuid: str) -> tuple[float, int, int]:
    """Workspace request, then every frame image over six connections, as the viewer does."""
    start = time.perf_counter()
    status, data, _ = Client(port, session_key).request("GET", f"/api/loops/{loop_uuid}/workspace/")
    assert status == 200, status
    urls = [frame["image_url"] for frame in json.loads(data)["frames"]]
    local = threading.local()

    def fetch(url: str) -> int:
        if not hasattr(local, "client"):
            local.client = Client(port, session_key)
        code, body, _ = local.client.request("GET", urlsplit(url).path)
        assert code == 200, (code, url)
        return len(body)

    with ThreadPoolExecutor(max_workers=6) as pool:
        sizes = list(pool.map(fetch, urls))
    return time.perf_counter() - start, len(urls), sum(sizes)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--physicians", type=int, default=20)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument(
        "--think", type=float, nargs=2, default=(1.0, 2.0), metavar=("MIN", "MAX"), help="seconds on each frame"
    )
    args = parser.parse_args()

    ensure_database()
    sessions, loop_uuid, frames = prepare(args.physicians)
    port = free_port()
    server = subprocess.Popen(  # noqa: S603 - our own interpreter and app
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "cagvlm_site.asgi:application"],
        cwd=REPO,
        env=SERVER_ENV,
        stdout=subprocess.DEVNULL,
        stderr=(SCRATCH / "server.log").open("wb"),
    )
    try:
        for _ in range(100):
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.1)
        # Warm up: the first requests import views and open database connections.
        for key in sessions[:2]:
            Client(port, key).request("GET", f"/api/frames/{frames[0]}/state/")
        ready_s, frame_count, total_bytes = loop_ready(port, sessions[0], loop_uuid)

        deadline = time.perf_counter() + args.seconds
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=args.physicians) as pool:
            results = list(
                pool.map(
                    lambda item: physician_session(port, item[1], frames, deadline, item[0], tuple(args.think)),
                    enumerate(sessions),
                )
            )
        elapsed = time.perf_counter() - started
    finally:
        server.terminate()
        server.wait(timeout=10)

    from django.contrib.auth.models import User

    from annotation.models import FrameLabel

    lost = 0
    for number, result in enumerate(results):
        user = User.objects.get(username=f"bench{number:02d}")
        stored = {
            str(frame_uuid): (laterality, category)
            for frame_uuid, laterality, category in FrameLabel.objects.filter(
                physician=user, withdrawn_at__isnull=True
            ).values_list("frame__uuid", "laterality", "category")
        }
        lost += sum(1 for frame, value in result["acknowledged"].items() if stored.get(frame) != value)
    latencies = [s * 1000 for r in results for s in r["writes"] + r["reads"]]
    writes = [s * 1000 for r in results for s in r["writes"]]
    reads = [s * 1000 for r in results for s in r["reads"]]
    by_status: dict[str, int] = {}
    for result in results:
        for key, count in result["errors"].items():
            by_status[key] = by_status.get(key, 0) + count
    errors = sum(by_status.values())
    if by_status:
        print(f"errors by request and status: {by_status}; the server's log says:")
        log = (SCRATCH / "server.log").read_text(errors="replace").strip().splitlines()
        print("\n".join(line for line in log if "Error" in line or "error" in line)[-3000:])
    rps = len(latencies) / elapsed
    print(
        f"{args.physicians} physicians, {elapsed:.0f} s, think {args.think[0]:g}-{args.think[1]:g} s, "
        f"{len(latencies)} requests, {len(frames)} frames to label"
    )
    print(f"label PUT p50 {percentile(writes, 50):.1f} ms p95 {percentile(writes, 95):.1f} ms; "
          f"state GET p50 {percentile(reads, 50):.1f} ms p95 {percentile(reads, 95):.1f} ms "
          f"(write/read p50 ratio {percentile(writes, 50) / percentile(reads, 50):.2f})")  # fmt: skip
    kb_per_frame = total_bytes / frame_count / 1024
    print(f"loop of {frame_count} frames ready to play in {ready_s:.2f} s ({kb_per_frame:.1f} kB/frame)")
    shutil.rmtree(SCRATCH, ignore_errors=True)
    print(
        f"p50_ms={percentile(latencies, 50):.1f} p95_ms={percentile(latencies, 95):.1f} "
        f"p99_ms={percentile(latencies, 99):.1f} rps={rps:.0f} errors={errors} lost={lost} "
        f"loop_ready_s={ready_s:.2f} kb_per_frame={total_bytes / frame_count / 1024:.1f}"
    )


if __name__ == "__main__":
    main()
