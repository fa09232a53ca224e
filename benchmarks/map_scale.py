"""Dynamic fan-out at scale: ``root -> @dag.map (N items) -> join`` for N up to 100,000.

For each N (and with ``chunk=100``) this reports: wall time from submit to the join's end,
items per second, Redis commands per item arrival (``INFO commandstats``, everything the run
caused, RQ's own commands included), bytes of Redis memory per item (``used_memory`` with the
run's results still stored), and the time from the last item's end to the join's start.

    python -m benchmarks map [--sizes 1000,10000,100000] [--workers 2] [--worker-class pool|fork]
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from rq import Worker

from .keep import keep, take_save
from .server import command_count, redis_server

HERE = Path(__file__).resolve().parent

SOURCE = """
from dagrq import DAG

dag = DAG("mapbench")
chunked = DAG("mapbench_c")


@dag.node
def items(n: int) -> list[int]:
    return list(range(n))


@dag.map("items")
def work(items: int) -> int:
    return items


@dag.node
def join(work: list[int]) -> int:
    return len(work)


@chunked.node(name="items")
def items_c(n: int) -> list[int]:
    return list(range(n))


@chunked.map("items", chunk=100, name="work")
def work_c(items: int) -> int:
    return items


@chunked.node(name="join")
def join_c(work: list[int]) -> int:
    return len(work)
"""


def _workers(address: str, url: str, n: int, worker_class: str) -> list[subprocess.Popen[bytes]]:
    """One ``dagrq worker`` with ``n`` pooled processes (``--isolate`` for ``fork``)."""
    env = dict(os.environ, DAGRQ_LOG="WARNING")
    argv = [sys.executable, "-m", "dagrq", "worker", address, "--url", url, "-c", str(n)]
    if worker_class == "fork":
        argv.append("--isolate")
    return [subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]


def measure(
    url: str, folder: Path, attr: str, n: int, workers: int, worker_class: str
) -> dict[str, Any]:
    """One run of ``attr`` (``dag`` or ``chunked``) over ``n`` items."""
    from dagrq import loader

    path = folder / "mapbench.py"
    if not path.exists():
        path.write_text(SOURCE)
    address = f"{path}:{attr}"
    dag = loader.load(address)
    conn = redis.Redis.from_url(url)
    conn.flushall()
    procs = _workers(address, url, workers, worker_class)
    try:
        deadline = time.monotonic() + 30
        while Worker.count(connection=conn) < workers and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        conn.config_resetstat()
        mem_before = int(conn.info("memory")["used_memory"])
        started = time.time()
        run = dag.submit(conn, n=n)
        run.wait(timeout=3600, poll_s=0.5)
        wall = time.time() - started
        cmds = command_count(conn)
        mem_after = int(conn.info("memory")["used_memory"])
        nodes = run.status().nodes
        results_bytes = int(conn.memory_usage(f"dagrq:run:{{{run.id}}}:map:work") or 0)
        items_bytes = int(conn.memory_usage(f"dagrq:run:{{{run.id}}}:items:work") or 0)
        assert run.result("join") == n
        gap = (nodes["join"].started_at or 0) - (nodes["work"].ended_at or 0)
        expanded = conn.hget(f"dagrq:run:{{{run.id}}}:nodes", "work:expanded")
        expand_s = float(expanded) - (nodes["work"].started_at or 0) if expanded else 0.0
        return {
            "benchmark": "map_scale",
            "at": time.time(),
            "n": n,
            "chunk": 100 if attr == "chunked" else 1,
            "workers": workers,
            "worker_class": worker_class,
            "wall_s": round(wall, 3),
            "items_per_s": round(n / wall, 1),
            "redis_cmds": cmds,
            "cmds_per_item": round(cmds / max(n, 1), 2),
            "bytes_per_item": round((mem_after - mem_before) / max(n, 1), 1),
            "result_bytes_per_item": round(results_bytes / max(n, 1), 1),
            "item_bytes_per_item": round(items_bytes / max(n, 1), 1),
            "last_item_to_join_start_ms": round(gap * 1000, 1),
            "enqueue_s": round(expand_s, 3),
        }
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait()


def main(argv: list[str]) -> int:
    argv, save = take_save(argv)
    opts = {
        "--sizes": "1000,10000,100000",
        "--workers": "2",
        "--worker-class": "pool",
        "--repeat": "1",
    }
    for key, value in zip(argv[::2], argv[1::2], strict=False):
        opts[key] = value
    sizes = [int(x) for x in opts["--sizes"].split(",")]
    workers, worker_class = int(opts["--workers"]), opts["--worker-class"]
    rows: list[dict[str, Any]] = []
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            for attr in ("dag", "chunked"):
                if attr == "chunked" and n < 100_000 and "--all-chunked" not in argv:
                    continue
                runs = [
                    measure(url, Path(tmp), attr, n, workers, worker_class)
                    for _ in range(int(opts["--repeat"]))
                ]
                row = dict(runs[0])
                row["wall_s"] = statistics.median(r["wall_s"] for r in runs)
                row["items_per_s"] = round(n / row["wall_s"], 1)
                rows.append(row)
                print(json.dumps(row), flush=True)
    keep("map_scale", rows, save)
    print(
        "| N | chunk | workers | wall s | items/s | items enqueued in | Redis cmds / item "
        "| bytes / item | last item end -> join start |"
    )
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['n']:,} | {r['chunk']} | {r['workers']} {r['worker_class']} | {r['wall_s']} "
            f"| {r['items_per_s']} | {r.get('enqueue_s', '?')} s | {r['cmds_per_item']} "
            f"| {r['bytes_per_item']} "
            f"| {r['last_item_to_join_start_ms']} ms |"
        )
    return 0
