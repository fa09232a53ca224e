"""Worker processes for one benchmark cell: dagrq, RQ or Celery, started and stopped together."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import redis
from rq import Worker

from dagrq.workers.processes import Processes, worker_argv

ROOT = Path(__file__).resolve().parent.parent


def dagrq_worker(url: str, target: str, processes: int, *extra: str) -> list[str]:
    """``dagrq worker`` for one pipeline (``file.py:attr``): a pool of ``processes``."""
    return worker_argv(target, "--url", url, "-c", str(processes), *extra)


def dagrq_simple_worker(url: str, target: str) -> list[str]:
    """One unsupervised dagrq worker on RQ's SimpleWorker (the reference column)."""
    return [sys.executable, "-m", "benchmarks.simple_worker", target, url]


def rq_worker(url: str) -> list[str]:
    """A plain ``rq worker`` (SimpleWorker) on the queue ``bench``."""
    return [
        sys.executable, "-m", "rq.cli", "worker", "bench", "--url", url, "-q",
        "-w", "rq.worker.SimpleWorker",
    ]  # fmt: skip


def celery_worker(concurrency: int) -> list[str]:
    """One Celery worker, prefork pool with ``concurrency`` processes."""
    return [
        sys.executable, "-m", "celery", "-A", "benchmarks.celery_app", "worker",
        "-c", str(concurrency), "--pool", "prefork", "-l", "WARNING",
        "--without-heartbeat", "--without-mingle", "--without-gossip",
    ]  # fmt: skip


class Workers:
    """Worker processes started together (dagrq's process group); ``rq_workers`` of them are
    awaited as registered RQ workers before the cell starts (Celery's are given a fixed 3 s)."""

    def __init__(self, url: str, argv: list[list[str]], rq_workers: int) -> None:
        env = {
            "BENCH_URL": url,
            "DAGRQ_LOG": "WARNING",
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        self.procs = Processes(env=env, cwd=ROOT)
        for a in argv:
            self.procs.start(a)
        conn = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        if rq_workers:
            while Worker.count(connection=conn) < rq_workers and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            time.sleep(3)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def children(self) -> list[int]:
        """The pids of the worker processes under the started ones (a pool's processes)."""
        import psutil

        return [c.pid for proc, _ in self.procs.procs for c in psutil.Process(proc.pid).children()]

    def stop(self) -> None:
        """Terminate every process (kill after 15 s)."""
        self.procs.stop(grace_s=15)


def for_system(system: str, url: str, target: str | None, n: int) -> Workers:
    """``n`` worker processes of ``system``: ``dagrq`` (the default pool of ``n``),
    ``dagrq_isolate`` (the pool with a work horse per node), ``dagrq_simple`` (``n``
    unsupervised SimpleWorkers), each for ``target``; ``rq`` or ``celery``."""
    if system == "dagrq":
        assert target is not None
        return Workers(url, [dagrq_worker(url, target, n)], n)
    if system == "dagrq_isolate":
        assert target is not None
        return Workers(url, [dagrq_worker(url, target, n, "--isolate")], n)
    if system == "dagrq_simple":
        assert target is not None
        return Workers(url, [dagrq_simple_worker(url, target)] * n, n)
    if system == "rq":
        return Workers(url, [rq_worker(url)] * n, n)
    return Workers(url, [celery_worker(n)], 0)
