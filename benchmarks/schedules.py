"""A scheduler under load: 100 schedules each firing every second for 60 s, beside RQ's own
cron (``rq.cron.CronScheduler``, 100 jobs with ``interval=1``).

dagrq: one ``dagrq scheduler`` process (a leader, as every worker is one) on one DAG with 100
``* * * * * *`` schedules (overlap ``allow``; no worker runs the runs: the cell measures the
scheduler). Lateness is a run's ``created_at`` minus its tick. RQ: one ``CronScheduler`` in its
own process; lateness is a job's ``enqueued_at`` minus the one-second grid from its first
enqueue (RQ's interval jobs are due ``interval`` after their last enqueue, so lateness adds
up). Commands per tick are the server's count over the cell divided by the ticks fired (a
dagrq tick writes a whole run: its hash, nodes, events, index entries and RQ job).

    python -m benchmarks schedules [--seconds 60] [--schedules 100] [--save]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import redis

from .keep import keep, save_flag
from .server import command_count, redis_server

ROOT = Path(__file__).resolve().parent.parent

RQ_CRON = """
import sys, redis
from rq.cron import CronScheduler
conn = redis.Redis.from_url(sys.argv[1])
cron = CronScheduler(connection=conn, name="bench")
from benchmarks.bodies import noop
for i in range(int(sys.argv[2])):
    cron.register(noop, queue_name="cron", interval=1, name=f"c{i}")
cron.start()
"""


def _pipeline(folder: Path, n: int) -> Path:
    lines = ["from dagrq import DAG", "", 'dag = DAG("bench_sched")']
    lines += [f'dag.schedule("* * * * * *", name="s{i}", overlap="allow")' for i in range(n)]
    lines += ["", "", "@dag.node", "def tick() -> int:", "    return 1", ""]
    path = folder / "sched_bench.py"
    path.write_text("\n".join(lines))
    return path


def quantiles(values: list[float]) -> dict[str, float]:
    """p50, p99 and max of ``values`` (seconds), in ms."""
    values = sorted(values)
    if not values:
        return {"p50_ms": 0.0, "p99_ms": 0.0, "max_ms": 0.0}
    p99 = values[min(len(values) - 1, int(len(values) * 0.99))]
    return {
        "p50_ms": round(statistics.median(values) * 1000, 1),
        "p99_ms": round(p99 * 1000, 1),
        "max_ms": round(values[-1] * 1000, 1),
    }


def _run_for(argv: list[str], seconds: float) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "DAGRQ_LOG": "WARNING"}
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    time.sleep(seconds)
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


def dagrq_cell(url: str, folder: Path, n: int, seconds: float) -> dict[str, Any]:
    """The dagrq scheduler's cell (see the module docstring)."""
    from dagrq.client import Run

    conn = redis.Redis.from_url(url)
    path = _pipeline(folder, n)
    before = command_count(conn)
    argv = [sys.executable, "-m", "dagrq", "scheduler", f"{path}:dag", "--url", url]
    _run_for(argv, seconds)
    commands = command_count(conn) - before
    runs = Run.list(conn, dag="bench_sched", limit=100_000)
    late = []
    for run in runs:
        tick = datetime.fromisoformat(run.trigger.split(" @ ", 1)[1]).timestamp()
        late.append(run.created_at - tick)
    expected = n * int(seconds)
    fired = len(runs)
    per_tick = round(commands / max(1, fired), 1)
    return {"system": "dagrq scheduler", "fired": fired, "expected_about": expected,
            "commands_per_tick": per_tick, **quantiles(late)}  # fmt: skip


def rq_cell(url: str, n: int, seconds: float) -> dict[str, Any]:
    """RQ's CronScheduler cell (see the module docstring)."""
    from rq.cron import get_cron_job_ids
    from rq.job import Job

    conn = redis.Redis.from_url(url)
    before = command_count(conn)
    _run_for([sys.executable, "-c", RQ_CRON, url, str(n)], seconds)
    commands = command_count(conn) - before
    late, fired = [], 0
    for i in range(n):
        ids = list(reversed(get_cron_job_ids(f"c{i}", conn)))  # oldest first
        stamps = [j.enqueued_at for j in Job.fetch_many(ids, connection=conn) if j is not None]
        times = [s.timestamp() for s in stamps if s is not None]
        fired += len(times)
        late += [t - (times[0] + k) for k, t in enumerate(times)]
    per_tick = round(commands / max(1, fired), 1)
    return {"system": "RQ CronScheduler (interval=1)", "fired": fired,
            "expected_about": n * int(seconds), "commands_per_tick": per_tick,
            **quantiles(late)}  # fmt: skip


def main(argv: list[str]) -> int:
    """Both cells on fresh servers; a table; ``--save`` keeps the rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks schedules", description=__doc__)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--schedules", type=int, default=100)
    save_flag(parser)
    args = parser.parse_args(argv)
    rows = []
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        rows.append(dagrq_cell(url, Path(tmp), args.schedules, args.seconds))
    with redis_server() as url:
        rows.append(rq_cell(url, args.schedules, args.seconds))
    print(f"{args.schedules} schedules every second for {args.seconds:g} s, {os.cpu_count()} cores")
    print("| system | ticks fired | of about | lateness p50 | p99 | max | Redis commands / tick |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['system']} | {r['fired']} | {r['expected_about']} | {r['p50_ms']} ms "
              f"| {r['p99_ms']} ms | {r['max_ms']} ms | {r['commands_per_tick']} |")  # fmt: skip
    stamp = time.time()
    keep("schedules", [{**r, "at": stamp, "seconds": args.seconds} for r in rows], args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
