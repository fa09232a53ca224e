"""Durable timers at scale: N sleepers (default 1000) of S seconds (default 5) on 2 worker
processes, side by side with RQ's ``enqueue_in`` (its scheduler in the workers) and Celery's
``countdown=`` (ETA tasks its worker holds in memory until due).

dagrq, two shapes: N runs of one node with ``start_after=S`` (one node, as RQ's and Celery's
one delayed job), and N runs of ``dag.sleep("nap", duration=S)`` then a node (two node
executions when due). A delayed node is parked when it fires (a due time in
``dagrq:timers``, no process held) and any worker's claim moves it when due. Each sleeper's
due time is taken just before its submit / enqueue / send; lateness is when the body after the
sleep ran minus that due time (p50, p99, max). Also reported: how long submitting took, and
Redis commands per sleeper. A last dagrq row runs the same N one-node runs with no wait at
all: its "lateness" is how long the two processes take to work off a burst of N runs, the
floor under any timer's lateness when N come due at once.

    python -m benchmarks waits [--sleepers 1000] [--seconds 5] [--workers 2] [--save]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis

from .keep import keep, save_flag
from .pool import ROOT, Workers, celery_worker, dagrq_worker
from .schedules import quantiles
from .server import command_count, redis_server

PIPELINE = """
from datetime import timedelta

from benchmarks.bodies import mark
from dagrq import DAG

dag = DAG("bench_sleep")
dag.sleep("nap", duration=timedelta(seconds={seconds}))


@dag.node(after=["nap"])
def woke(token: str) -> None:
    mark(token)


delayed = DAG("bench_delay")


@delayed.node(start_after=timedelta(seconds={seconds}))
def late(token: str) -> None:
    mark(token)


instant = DAG("bench_instant")


@instant.node
def now(token: str) -> None:
    mark(token)
"""


def _measure(
    system: str,
    conn: redis.Redis,
    n: int,
    seconds: float,
    submit: Callable[[str], None],
) -> dict[str, Any]:
    """Submit ``n`` sleepers with ``submit(token)``, wait for their marks, and say how late."""
    due: dict[str, float] = {}
    before = command_count(conn)
    began = time.monotonic()
    for i in range(n):
        token = f"{system}-{i}"
        due[token] = time.time() + seconds
        submit(token)
    submitting = time.monotonic() - began
    tokens = list(due)
    deadline = time.monotonic() + seconds + 120
    marks: list[bytes | None] = []
    while time.monotonic() < deadline:
        marks = conn.mget([f"bench:done:{t}" for t in tokens])
        if all(m is not None for m in marks):
            break
        time.sleep(0.25)
    late = [float(m) - due[t] for t, m in zip(tokens, marks, strict=True) if m is not None]
    commands = command_count(conn) - before
    return {
        "system": system,
        "sleepers": n,
        "ended": len(late),
        "submit_s": round(submitting, 2),
        "commands_per_sleeper": round(commands / n, 1),
        "early": sum(1 for x in late if x < -0.001),
        **quantiles(late),
    }


def dagrq_cell(
    url: str, folder: Path, n: int, seconds: float, procs: int, attr: str
) -> dict[str, Any]:
    """N runs of a DAG that waits (``attr``: ``delayed``, one node with ``start_after``;
    ``dag``, ``dag.sleep`` then a node), on a ``dagrq worker`` pool of ``procs`` processes."""
    from dagrq import loader

    path = folder / "sleep_bench.py"
    path.write_text(PIPELINE.format(seconds=seconds))
    target = f"{path}:{attr}"
    conn = redis.Redis.from_url(url)
    dag = loader.load(target)
    names = {"delayed": "dagrq start_after", "dag": "dagrq dag.sleep + node"}
    name = names.get(attr, "dagrq, no wait (the same burst at once)")
    wait = seconds if attr in names else 0.0
    with Workers(url, [dagrq_worker(url, target, procs)], procs):
        return _measure(name, conn, n, wait, lambda t: _submit(dag, conn, t))


def _submit(dag: Any, conn: redis.Redis, token: str) -> None:
    dag.submit(conn, token=token)


def rq_cell(url: str, n: int, seconds: float, procs: int) -> dict[str, Any]:
    """``Queue.enqueue_in`` on RQ workers with their scheduler."""
    from rq import Queue

    from .bodies import mark

    conn = redis.Redis.from_url(url)
    queue = Queue("bench", connection=conn)
    argv = [sys.executable, "-m", "rq.cli", "worker", "bench", "--url", url, "-q",
            "--with-scheduler"]  # fmt: skip
    wait = timedelta(seconds=seconds)
    with Workers(url, [argv] * procs, procs):
        return _measure(
            "RQ enqueue_in", conn, n, seconds, lambda t: queue.enqueue_in(wait, mark, t)
        )


def celery_cell(url: str, n: int, seconds: float, procs: int) -> dict[str, Any]:
    """``apply_async(countdown=)`` on one Celery worker of ``procs`` processes."""
    os.environ["BENCH_URL"] = url
    from .celery_app import mark, release_results

    conn = redis.Redis.from_url(url)
    with Workers(url, [celery_worker(procs)], 0):
        row = _measure(
            "Celery countdown",
            conn,
            n,
            seconds,
            lambda t: mark.apply_async(args=[None, t], countdown=seconds),
        )
    release_results()
    return row


def main(argv: list[str]) -> int:
    """The cells on fresh servers; a table; ``--save`` keeps the rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks waits", description=__doc__)
    parser.add_argument("--sleepers", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--systems", default="dagrq,rq,celery")
    save_flag(parser)
    args = parser.parse_args(argv)
    wanted = {s.strip() for s in args.systems.split(",")}
    n, s, w = args.sleepers, args.seconds, args.workers
    rows = []
    if "dagrq" in wanted:
        sys.path.insert(0, str(ROOT))
        for attr in ("delayed", "dag", "instant"):
            with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
                rows.append(dagrq_cell(url, Path(tmp), n, s, w, attr))
    if "rq" in wanted:
        with redis_server() as url:
            rows.append(rq_cell(url, n, s, w))
    if "celery" in wanted:
        try:
            import celery  # noqa: F401
        except ImportError:
            print("celery not installed: skipping Celery (pip install -e '.[bench]')")
        else:
            with redis_server() as url:
                rows.append(celery_cell(url, n, s, w))
    print(f"{n} sleepers of {s:g} s, {w} worker processes per system, {os.cpu_count()} cores")
    print("| system | ended | early | lateness p50 | p99 | max | submit | commands / sleeper |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['system']} | {r['ended']}/{r['sleepers']} | {r['early']} | {r['p50_ms']} ms "
              f"| {r['p99_ms']} ms | {r['max_ms']} ms | {r['submit_s']} s "
              f"| {r['commands_per_sleeper']} |")  # fmt: skip
    stamp = time.time()
    keep("waits", [{**r, "at": stamp, "seconds": s, "workers": w} for r in rows], args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
