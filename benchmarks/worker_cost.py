"""What one worker process spends per job, in the process itself: Redis round trips (counted
where redis-py writes to the socket: a pipeline is one) and Python heap growth (``tracemalloc``
over many nodes, after a warm-up). dagrq's pooled worker (``SimpleWorker``-based, nodes run
in-process) on chains of no-op nodes, beside RQ's own ``SimpleWorker`` on plain no-op RQ jobs.

    python -m benchmarks worker-cost [--jobs 2000] [--heap-nodes 8000] [--save]
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

import redis

from . import dags
from .keep import keep, save_flag
from .server import redis_server

CHAIN = 199  # a run is 199 nodes and its end: 200 jobs


class CountingConnection(redis.Connection):
    """A connection that counts the times it writes to the server (one per round trip)."""

    sent = 0

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        """redis-py's write, counted."""
        CountingConnection.sent += 1
        super().send_packed_command(command, check_health)


def _drain_dagrq(url: str, dag: Any, runs: int) -> int:
    """Submit ``runs`` runs, serve them with one in-process dagrq worker (burst); its jobs."""
    from dagrq.workers.leased import make_worker

    plain = redis.Redis.from_url(url)
    for _ in range(runs):
        dag.submit(plain)
    counted = redis.Redis.from_url(url, connection_class=CountingConnection)
    worker = make_worker([dag], counted, fork=False)
    worker.work(burst=True, with_scheduler=False)
    return runs * (CHAIN + 1)


def _drain_rq(url: str, jobs: int) -> int:
    """Enqueue ``jobs`` plain no-op RQ jobs and drain them with RQ's ``SimpleWorker``."""
    from rq import Queue, SimpleWorker

    queue = Queue("rq-cost", connection=redis.Redis.from_url(url))
    for start in range(0, jobs, 500):
        queue.enqueue_many(
            [Queue.prepare_data("benchmarks.bodies.noop") for _ in range(min(500, jobs - start))]
        )
    counted = redis.Redis.from_url(url, connection_class=CountingConnection)
    SimpleWorker([Queue("rq-cost", connection=counted)], connection=counted).work(burst=True)
    return jobs


def round_trips(url: str, dag: Any, jobs: int) -> dict[str, float]:
    """Round trips per job of each worker, after a warm-up run of each."""
    found = {}
    for name, drain in (
        ("dagrq worker (pooled process)", lambda n: _drain_dagrq(url, dag, max(1, n // 200))),
        ("RQ SimpleWorker, plain jobs", lambda n: _drain_rq(url, n)),
    ):
        drain(200)  # warm-up: scripts loaded, imports done
        CountingConnection.sent = 0
        done = drain(jobs)
        found[name] = round(CountingConnection.sent / done, 1)
    return found


def heap_growth(url: str, dag: Any, nodes: int) -> float:
    """Bytes the Python heap of one dagrq worker grew per node over ``nodes`` nodes: the runs
    are submitted and the worker made before tracing starts, so only serving is traced."""
    from dagrq.workers.leased import make_worker

    _drain_dagrq(url, dag, 1)  # warm-up: imports, scripts, caches
    plain = redis.Redis.from_url(url)
    runs = max(1, nodes // (CHAIN + 1))
    for _ in range(runs):
        dag.submit(plain)
    worker = make_worker([dag], redis.Redis.from_url(url), fork=False)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    worker.work(burst=True, with_scheduler=False)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    return round((after - before) / (runs * (CHAIN + 1)), 1)


def main(argv: list[str]) -> int:
    """Measure, print, and with ``--save`` keep (results/worker_cost.jsonl)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks worker-cost", description=__doc__)
    parser.add_argument("--jobs", type=int, default=2000, help="jobs per round-trip count")
    parser.add_argument("--heap-nodes", type=int, default=8000, help="nodes traced for the heap")
    save_flag(parser)
    args = parser.parse_args(argv)
    from dagrq import loader

    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        dag = loader.load(f"{dags.write(Path(tmp), CHAIN)}:chain")
        trips = round_trips(url, dag, args.jobs)
        heap = heap_growth(url, dag, args.heap_nodes)
    row = {"cell": "worker-cost", "jobs": args.jobs, "round_trips_per_job": trips}
    row |= {"heap_nodes": args.heap_nodes, "heap_bytes_per_node": heap, "at": time.time()}
    print(json.dumps(row))
    for name, per_job in trips.items():
        print(f"{name}: {per_job} Redis round trips per job")
    print(f"dagrq worker heap: {heap} bytes per node over {args.heap_nodes} nodes (tracemalloc)")
    keep("worker_cost", [row], args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
