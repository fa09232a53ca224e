"""Redis commands per join arrival: dagrq's received-set join vs RQ's ``depends_on``.

For an N-way fan-in (root -> N parents -> join), one burst worker runs the whole shape and the
server's ``INFO commandstats`` counts every command (commands inside Lua scripts included).
The same N jobs without any join (plain RQ) give the baseline, so

    join commands per arrival = (commands of the fan-in run - commands of N+2 plain jobs) / N

and, for dagrq, the arrival step alone (``complete.lua``, one EVALSHA) is counted directly.

    python -m benchmarks join-cost [--widths 2,10,100]
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.job import Dependency

from .keep import keep, take_save
from .server import command_count, fake_join, redis_server

HERE = Path(__file__).resolve().parent
NOOP = "benchmarks.bodies.noop"


def _burst(url: str, *args: str, cwd: Path) -> None:
    env = dict(
        os.environ,
        PYTHONPATH=f"{HERE.parent}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        DAGRQ_LOG="WARNING",
    )
    subprocess.run(
        args, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )


def _rq_commands(url: str, queue: str, enqueue: Callable[[Queue], None]) -> int:
    """Commands one burst `rq worker` spends on the jobs ``enqueue`` puts on ``queue``."""
    conn = redis.Redis.from_url(url)
    conn.flushall()
    enqueue(Queue(queue, connection=conn))
    conn.config_resetstat()
    _burst(
        url,
        sys.executable,
        "-m",
        "rq.cli",
        "worker",
        queue,
        "--url",
        url,
        "--burst",
        "-q",
        cwd=HERE.parent,
    )
    return command_count(conn)


def measure_plain(url: str, jobs: int) -> int:
    """N plain no-op RQ jobs: the baseline."""

    def enqueue(q: Queue) -> None:
        for _ in range(jobs):
            q.enqueue(NOOP)

    return _rq_commands(url, "plain", enqueue)


def measure_rq(url: str, width: int) -> int:
    """root -> N parents -> join with RQ's own ``depends_on``."""

    def enqueue(q: Queue) -> None:
        root = q.enqueue(NOOP)
        parents = [q.enqueue(NOOP, depends_on=root) for _ in range(width)]
        q.enqueue(NOOP, depends_on=Dependency(jobs=parents))

    return _rq_commands(url, "native", enqueue)


def measure_dagrq(url: str, width: int, folder: Path) -> tuple[int, tuple[int, int]]:
    """(commands of the run, commands of complete.lua for one arrival at the join)."""
    from dagrq import loader

    from .dags import fan_in_source

    path = folder / f"fanin{width}.py"
    path.write_text(fan_in_source(f"fanin{width}", width))
    dag = loader.load(f"{path}:dag")
    conn = redis.Redis.from_url(url)
    conn.flushall()
    conn.config_resetstat()
    run = dag.submit(conn)
    submit_cmds = command_count(conn)
    _burst(
        url,
        sys.executable,
        "-m",
        "dagrq",
        "worker",
        f"{path}:dag",
        "--url",
        url,
        "--burst",
        cwd=folder,
    )
    assert run.status().state == "succeeded", run.status()
    total = command_count(conn) - submit_cmds
    return total, arrival_only(conn, width)


def arrival_only(conn: redis.Redis, width: int) -> tuple[int, int]:
    """Commands of one complete.lua call at a width-way join: (first arrival, last arrival).

    The first arrival waits (records the parent in the received-set); the last one fires
    the join and enqueues it, in the same atomic step.
    """
    from dagrq.store import scripts

    def one_run() -> tuple[int, int]:
        run_id, parents, child = fake_join(conn, width)
        costs = []
        for parent in parents:
            before = command_count(conn)
            scripts.complete(
                conn, run_id, parent, [child], scripts.Report("succeeded"), ttl_s=60, version="b"
            )
            costs.append(command_count(conn) - before)
        return costs[0], costs[-1]

    one_run()  # loads the script (SCRIPT LOAD after a NOSCRIPT) outside the measurement
    return one_run()


def main(argv: list[str]) -> int:
    argv, save = take_save(argv)
    widths = [2, 10, 100]
    if argv and argv[0] == "--widths":
        widths = [int(x) for x in argv[1].split(",")]
    rows: list[dict[str, Any]] = []
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        for width in widths:
            plain = measure_plain(url, width + 2)
            rq_total = measure_rq(url, width)
            dagrq_total, arrival = measure_dagrq(url, width, Path(tmp))
            rows.append(
                {
                    "benchmark": "join_cost",
                    "width": width,
                    "at": time.time(),
                    "plain_rq_cmds": plain,
                    "rq_native_cmds": rq_total,
                    "dagrq_cmds": dagrq_total,
                    "rq_native_join_cmds_per_arrival": round((rq_total - plain) / width, 1),
                    "dagrq_join_cmds_per_arrival": round((dagrq_total - plain) / width, 1),
                    "dagrq_first_arrival_cmds": arrival[0],
                    "dagrq_last_arrival_cmds": arrival[1],
                }
            )
    keep("join_cost", rows, save)
    print(
        "| fan-in N | plain RQ jobs, cmds | RQ depends_on, cmds | dagrq, cmds "
        "| RQ join cmds/arrival | dagrq join cmds/arrival "
        "| dagrq complete.lua: first arrival | last arrival (fires) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['width']} | {r['plain_rq_cmds']} | {r['rq_native_cmds']} | {r['dagrq_cmds']} "
            f"| {r['rq_native_join_cmds_per_arrival']} | {r['dagrq_join_cmds_per_arrival']} "
            f"| {r['dagrq_first_arrival_cmds']} | {r['dagrq_last_arrival_cmds']} |"
        )
    return 0
