"""What caching saves and costs: a 1,000-node DAG (10 chains of 100 nodes, each node working
``--work-ms``) run uncached, then again fully cached, on the same ``dagrq worker -c 4``; and the
round trips one in-process worker makes per node with caching off, on a miss, and on a hit.

RQ and Celery have no output cache to put beside it: their cell is the uncached run.

    python -m benchmarks cache [--work-ms 50] [--repeat 3] [--save]
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
from .pool import Workers, dagrq_worker
from .server import redis_server
from .worker_cost import CountingConnection

CHAINS, LENGTH = 10, 100


def source(cache: bool) -> str:
    """The pipeline: ``wide`` (10 chains x 100 nodes, each working ``hold`` seconds)."""
    lines = [
        "import time",
        "from dagrq import DAG",
        f"wide = DAG('bench_cache_{'on' if cache else 'off'}', cache={cache})",
    ]
    for c in range(CHAINS):
        for i in range(LENGTH):
            name, parent = f"n{c}_{i}", f"n{c}_{i - 1}" if i else None
            args = f"{parent}: int, hold: float = 0.0" if parent else "hold: float = 0.0"
            lines += [
                "",
                "@wide.node",
                f"def {name}({args}) -> int:",
                "    if hold:",
                "        time.sleep(hold)",
                f"    return {c * LENGTH + i}",
            ]
    return "\n".join(lines) + "\n"


def timed_run(url: str, target: str, work_s: float) -> float:
    """Seconds one run of ``target`` takes on the running workers."""
    from dagrq import loader

    dag = loader.load(target)
    conn = redis.Redis.from_url(url)
    began = time.perf_counter()
    status = dag.submit(conn, hold=work_s).wait(timeout=600)
    assert status.state == "succeeded", status.state
    return time.perf_counter() - began


def round_trips(url: str, off: str, on: str) -> dict[str, float]:
    """Round trips per node of one in-process worker: the same DAG uncached, cached on a
    miss (first run), cached on a hit (second run)."""
    from dagrq import loader
    from dagrq.workers.leased import make_worker

    out = {}
    for label, address in (("off", off), ("on", on)):
        dag = loader.load(address)
        plain = redis.Redis.from_url(url)
        for phase in ("miss", "hit") if label == "on" else ("uncached",):
            dag.submit(plain)
            counted = redis.Redis.from_url(url, connection_class=CountingConnection)
            worker = make_worker([dag], counted, fork=False)
            CountingConnection.sent = 0
            worker.work(burst=True, with_scheduler=False)
            out[phase] = round(CountingConnection.sent / len(dag.specs), 2)
    return out


def main(argv: list[str]) -> int:
    """Measure, print, and with ``--save`` keep (results/cache.jsonl)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks cache", description=__doc__)
    parser.add_argument("--work-ms", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3)
    save_flag(parser)
    args = parser.parse_args(argv)
    work_s = args.work_ms / 1000
    from dagrq.store.cache import clear

    cold: list[float] = []
    warm: list[float] = []
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        on, off = Path(tmp) / "cache_dags.py", Path(tmp) / "cache_dags_off.py"
        on.write_text(source(True))
        off.write_text(source(False))
        target = f"{on}:wide"
        with Workers(url, [dagrq_worker(url, target, 4)], 4):
            for _ in range(args.repeat):
                clear(redis.Redis.from_url(url), "bench_cache_on")
                cold.append(timed_run(url, target, work_s))
                warm.append(timed_run(url, target, work_s))
        redis.Redis.from_url(url).flushall()
        trips = round_trips(url, f"{off}:wide", target)
    row: dict[str, Any] = {
        "cell": "cache",
        "nodes": CHAINS * LENGTH,
        "work_ms": args.work_ms,
        "processes": 4,
        "repeat": args.repeat,
        "uncached_s": round(statistics.median(cold), 2),
        "cached_s": round(statistics.median(warm), 3),
        "speedup": round(statistics.median(cold) / statistics.median(warm), 1),
        "round_trips_per_node": trips,
        "at": time.time(),
    }
    print(json.dumps(row))
    print(
        f"1,000 nodes of {args.work_ms:g} ms on 4 processes: uncached {row['uncached_s']} s, "
        f"fully cached {row['cached_s']} s ({row['speedup']}x; medians of {args.repeat})"
    )
    print("round trips per node: " + ", ".join(f"{k} {v}" for k, v in trips.items()))
    keep("cache", [row], args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
