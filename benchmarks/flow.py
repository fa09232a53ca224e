"""What flow control costs: a node's throughput under a limit, side by side with the same node
unlimited (and plain RQ jobs of the same body), and the Redis round trips and commands a limit
adds per node.

Throughput: ``--runs`` one-node runs whose body sleeps ``--work-ms`` (the work a limit guards),
served by one ``dagrq worker -c 4`` (4 processes): unlimited; ``concurrency=4``; a pool of 4
slots; a rate limit too high to bind (its bookkeeping only). Then RQ's own SimpleWorkers (4)
on the same number of plain jobs. The limited cells must keep 90 % of the unlimited one's
throughput. Cost: one in-process dagrq worker drains no-op runs of each DAG (burst), counting
its round trips (each write to the socket) and the server's commands per node.

    python -m benchmarks flow [--runs 400] [--work-ms 10] [--repeat 3] [--save]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from .keep import keep, save_flag
from .pool import Workers, dagrq_worker, rq_worker
from .server import command_count, redis_server
from .worker_cost import CountingConnection

PROCESSES = 4
SOURCE = """
import time
from rq import get_current_job
from dagrq import DAG

free = DAG("bench_flow_free")
limited = DAG("bench_flow_limited")
pooled = DAG("bench_flow_pooled")
rated = DAG("bench_flow_rated")


def _body(hold: float) -> None:
    if hold:
        time.sleep(hold)
    job = get_current_job()
    job.connection.set(f"bench:done:{job.kwargs['run']}", repr(time.time()))


@free.node(name="work")
def work_free(hold: float = 0.0) -> None:
    _body(hold)


@limited.node(name="work", concurrency=4)
def work_limited(hold: float = 0.0) -> None:
    _body(hold)


@pooled.node(name="work", pool="bench_flow", pool_slots=1)
def work_pooled(hold: float = 0.0) -> None:
    _body(hold)


@rated.node(name="work", rate_limit="100000/s")
def work_rated(hold: float = 0.0) -> None:
    _body(hold)
"""
CELLS = ("free", "limited", "pooled", "rated")


def _done(conn: redis.Redis, want: int, timeout_s: float = 600) -> float:
    """Wait until ``want`` runs have marked their end; the last mark's time."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        marks = [float(v) for v in conn.mget(conn.keys("bench:done:*")) if v]
        if len(marks) >= want:
            return max(marks)
        time.sleep(0.05)
    raise TimeoutError(f"only {len(marks)} of {want} runs ended")


def throughput(url: str, target: str, cell: str, runs: int, work_s: float) -> float:
    """Runs a second through one ``dagrq worker -c 4`` (``cell`` is the DAG's attribute)."""
    from dagrq import loader, pools

    conn = redis.Redis.from_url(url)
    conn.flushall()
    pools.set(conn, "bench_flow", PROCESSES)
    dag = loader.load(f"{target}:{cell}")
    with Workers(url, [dagrq_worker(url, f"{target}:{cell}", PROCESSES)], PROCESSES):
        began = time.time()
        for _ in range(runs):
            dag.submit(conn, hold=work_s)
        last = _done(conn, runs)
    return runs / (last - began)


def rq_throughput(url: str, runs: int, work_s: float) -> float:
    """Plain RQ jobs of the same body a second through 4 RQ SimpleWorkers."""
    from rq import Queue

    conn = redis.Redis.from_url(url)
    conn.flushall()
    with Workers(url, [rq_worker(url)] * PROCESSES, PROCESSES):
        queue = Queue("bench", connection=conn)
        began = time.time()
        queue.enqueue_many(
            [
                Queue.prepare_data("benchmarks.bodies.hold_mark", args=(f"r{i}", work_s))
                for i in range(runs)
            ]
        )
        last = _done(conn, runs)
    return runs / (last - began)


def cost(url: str, target: str, cell: str, runs: int) -> dict[str, float]:
    """Round trips of one in-process worker, and server commands, per node of ``cell``."""
    from dagrq import loader
    from dagrq.workers.leased import make_worker

    plain = redis.Redis.from_url(url)
    dag = loader.load(f"{target}:{cell}")
    for _ in range(20):  # warm-up: scripts loaded, imports done
        dag.submit(plain)
    counted = redis.Redis.from_url(url, connection_class=CountingConnection)
    make_worker([dag], counted, fork=False).work(burst=True, with_scheduler=False)
    for _ in range(runs):
        dag.submit(plain)
    counted = redis.Redis.from_url(url, connection_class=CountingConnection)
    worker = make_worker([dag], counted, fork=False)
    CountingConnection.sent = 0
    before = command_count(plain)
    worker.work(burst=True, with_scheduler=False)
    commands = command_count(plain) - before
    return {
        "round_trips": round(CountingConnection.sent / runs, 2),
        "commands": round(commands / runs, 1),
    }


def main(argv: list[str]) -> int:
    """Measure, print, and with ``--save`` keep (results/flow.jsonl)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks flow", description=__doc__)
    parser.add_argument("--runs", type=int, default=400)
    parser.add_argument("--work-ms", type=float, default=10.0)
    parser.add_argument("--repeat", type=int, default=3)
    save_flag(parser)
    args = parser.parse_args(argv)
    work_s = args.work_ms / 1000
    rates: dict[str, list[float]] = {c: [] for c in (*CELLS, "rq_plain")}
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        target = str(Path(tmp) / "flow_dags.py")
        Path(target).write_text(SOURCE)
        for _ in range(args.repeat):  # cells alternate, so drift hits them alike
            for cell in CELLS:
                rates[cell].append(throughput(url, target, cell, args.runs, work_s))
            rates["rq_plain"].append(rq_throughput(url, args.runs, work_s))
        costs = {cell: cost(url, target, cell, 500) for cell in CELLS}
    medians = {c: round(statistics.median(v), 1) for c, v in rates.items()}
    base = medians["free"]
    row: dict[str, Any] = {
        "cell": "flow",
        "runs": args.runs,
        "work_ms": args.work_ms,
        "processes": PROCESSES,
        "repeat": args.repeat,
        "runs_per_s": medians,
        "of_unlimited": {c: round(v / base, 3) for c, v in medians.items()},
        "per_node": costs,
        "at": time.time(),
    }
    print(json.dumps(row))
    for cell, rate in medians.items():
        print(f"{cell:>9}: {rate:7.1f} runs/s  ({rate / base:.0%} of unlimited)")
    for cell, c in costs.items():
        print(f"{cell:>9}: {c['round_trips']} round trips, {c['commands']} commands per node")
    keep("flow", [row], args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
