"""A whole worker SIGKILLed while it holds a node (the machine died): how long until the node
runs again elsewhere, and whether any process of the killed worker outlived it.

Each trial has a Redis server and two `dagrq worker` pools of its own: the victim node's first
attempt waits to be killed; the test SIGKILLs the supervisor of the pool running it (its
processes and RQ's scheduler must die with it), then times the node's second attempt on the
other pool. Trials run a few at a time (a lease is mostly waiting).

    python -m benchmarks lost-worker --lease 5 --trials 20
    python -m benchmarks lost-worker --lease 60 --trials 20 --parallel 10
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import redis

from dagrq.workers.processes import Processes, worker_argv

from . import dags
from .keep import keep, save_flag
from .server import redis_server


def trial(path: Path, lease_s: int, folder: Path) -> dict[str, Any]:
    """One kill: seconds from the kill to the second attempt, and survivors 2 s after it."""
    from dagrq import loader

    with redis_server() as url:
        conn = redis.Redis.from_url(url)
        env = {"DAGRQ_URL": url, "DAGRQ_LOG": "WARNING", "DAGRQ_CONCURRENCY": "1"}
        with Processes(folder, env=env, cwd=folder) as procs:
            procs.start(worker_argv(f"{path}:victim", "--lease", str(lease_s)), 2)
            run = loader.load(f"{path}:victim").submit(conn)
            deadline = time.monotonic() + 120
            while (pid := conn.get(f"bench:pid:{run.id}")) is None:
                assert time.monotonic() < deadline, "the victim never started"
                time.sleep(0.01)
            supervisor = psutil.Process(int(pid)).parent()
            assert supervisor is not None
            family = [supervisor, *supervisor.children(recursive=True)]
            supervisor.kill()
            killed = time.monotonic()
            time.sleep(2)
            alive = [p.pid for p in family if p.is_running() and p.status() != "zombie"]
            while int(conn.get(f"bench:attempt:{run.id}") or 0) < 2:
                assert time.monotonic() < killed + 10 * lease_s + 120, "never re-run"
                time.sleep(0.05)
            return {"rerun_s": round(time.monotonic() - killed, 2), "alive_after_2s": alive}


def main(argv: list[str]) -> int:
    """Run the trials; print and keep (results/lost_worker.jsonl) median and max."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks lost-worker")
    parser.add_argument("--lease", type=int, default=5, help="the workers' --lease (seconds)")
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--parallel", type=int, default=5, help="trials at a time")
    save_flag(parser)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = dags.write(Path(tmp), 10)
        folders = [Path(tmp) / f"trial{i}" for i in range(args.trials)]
        for folder in folders:
            folder.mkdir()
        with ThreadPoolExecutor(args.parallel) as pool:
            found = list(pool.map(lambda f: trial(path, args.lease, f), folders))
    times = [t["rerun_s"] for t in found]
    row = {
        "cell": "lost-worker",
        "lease_s": args.lease,
        "trials": len(found),
        "rerun_s_median": round(statistics.median(times), 2),
        "rerun_s_max": max(times),
        "survivors": sum(len(t["alive_after_2s"]) for t in found),
        "at": time.time(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(row))
    print(
        f"lease {args.lease} s: node re-run {row['rerun_s_median']} s after a whole-worker "
        f"SIGKILL (median of {len(found)}), {row['rerun_s_max']} s at most; "
        f"{row['survivors']} processes of killed workers alive 2 s after",
        file=sys.stderr,
    )
    keep("lost_worker", [row], args.save)
    return 0
