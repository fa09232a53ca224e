"""How long dagrq takes to start and to stop, beside RQ doing the same: what a newcomer times
first.

- ``run``: ``dagrq run noop.py:dag`` of a 2-node no-op DAG on the embedded default (it starts
  its own Redis server and a local pool, runs, stops both), against RQ doing the same from
  nothing: one script that starts a redis-server (the same binary), enqueues two no-op jobs
  (the second ``depends_on`` the first), runs ``rq worker --burst`` and stops the server.
- ``burst``: a worker started with ``--burst`` on a run already queued: seconds from its
  launch to its first job starting, and from its last job ending to its exit.
  ``dagrq worker --burst -c 2`` against ``rq worker --burst`` and ``rq worker-pool --burst -n 2``.

Every command is a fresh interpreter (``sys.executable``, bytecode caches written), one warm-up
each, then ``--repeat`` timed; medians are reported.

    python -m benchmarks startup [--repeat 5] [--save]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis

from .keep import keep, save_flag
from .server import redis_binary, redis_server

ROOT = Path(__file__).resolve().parent.parent
NOOP = """from dagrq import DAG

dag = DAG("noop")


@dag.node
def a():
    return 1


@dag.node
def b(a):
    return a
"""
RQ_NOOP = '''"""RQ doing what `dagrq run noop.py:dag` does: a server, two dependent jobs, a burst
worker, the server stopped."""
import subprocess, sys, tempfile, time
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq import Queue

binary, folder = sys.argv[1], tempfile.mkdtemp()
sock = f"{folder}/redis.socket"
subprocess.run([binary, "--daemonize", "yes", "--port", "0", "--unixsocket", sock,
                "--save", "", "--dir", folder, "--pidfile", f"{folder}/pid"], check=True)
conn = redis.Redis(unix_socket_path=sock, retry=Retry(NoBackoff(), 0))  # SHUTDOWN: no retry
while True:
    try:
        conn.ping()
        break
    except (redis.ConnectionError, FileNotFoundError):
        time.sleep(0.005)
queue = Queue(connection=conn)
first = queue.enqueue("benchmarks.bodies.noop")
second = queue.enqueue("benchmarks.bodies.noop", depends_on=first)
subprocess.run([sys.executable, "-m", "rq.cli", "worker", "--burst", "--url",
                f"unix://{sock}", "-w", "rq.SimpleWorker", "-q"], check=True)
assert second.get_status(refresh=True) == "finished"
conn.shutdown(nosave=True)
'''


def _env() -> dict[str, str]:
    """This environment with bytecode caches on (warm runs use them, as an installed CLI)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE",)}
    return env | {"PYTHONPATH": str(ROOT), "DAGRQ_LOG": "WARNING"}


def _timed(argv: list[str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(argv, cwd=cwd, env=_env(), check=True, capture_output=True, timeout=120)
    return time.perf_counter() - started


def run_cells(folder: Path) -> dict[str, Callable[[], float]]:
    """The two whole commands, each a callable returning its wall time."""
    (folder / "noop.py").write_text(NOOP)
    (folder / "rq_noop.py").write_text(RQ_NOOP)
    dagrq_run = [sys.executable, "-m", "dagrq", "run", "noop.py:dag"]
    rq_run = [sys.executable, "rq_noop.py", redis_binary()]
    return {
        "dagrq run (embedded)": lambda: _timed(dagrq_run, folder),
        "RQ: server + 2 jobs + rq worker --burst": lambda: _timed(rq_run, folder),
    }


def _epoch(moment: datetime | None) -> float:
    assert moment is not None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _burst_dagrq(url: str, folder: Path) -> tuple[float, float]:
    from dagrq import loader

    dag = loader.load(f"{folder / 'noop.py'}:dag")
    run = dag.submit(redis.Redis.from_url(url))
    launched = time.time()
    argv = [sys.executable, "-m", "dagrq", "worker", f"{folder / 'noop.py'}:dag"]
    subprocess.run([*argv, "--burst", "-c", "2", "--url", url], cwd=folder, env=_env(), check=True)
    exited = time.time()
    status = run.status()
    assert status.state == "succeeded", status.state
    first, ended = status.nodes["a"].started_at, status.ended_at
    assert first is not None and ended is not None
    return first - launched, exited - ended


def _burst_rq(url: str, folder: Path, pool: bool) -> tuple[float, float]:
    from rq import Queue

    queue = Queue(connection=redis.Redis.from_url(url))
    first = queue.enqueue("benchmarks.bodies.noop")
    second = queue.enqueue("benchmarks.bodies.noop", depends_on=first)
    launched = time.time()
    how = ["worker-pool", "-n", "2"] if pool else ["worker"]
    argv = [sys.executable, "-m", "rq.cli", *how, "--burst", "--url", url, "-q"]
    subprocess.run([*argv, "-w", "rq.SimpleWorker"], cwd=ROOT, env=_env(), check=True)
    exited = time.time()
    first.refresh()
    second.refresh()
    assert second.get_status() == "finished"
    return _epoch(first.started_at) - launched, exited - _epoch(second.ended_at)


def burst_cells(url: str, folder: Path) -> dict[str, Callable[[], tuple[float, float]]]:
    """The burst workers, each a callable returning (launch to first job, last job to exit)."""
    return {
        "dagrq worker --burst -c 2": lambda: _burst_dagrq(url, folder),
        "rq worker --burst": lambda: _burst_rq(url, folder, pool=False),
        "rq worker-pool --burst -n 2": lambda: _burst_rq(url, folder, pool=True),
    }


def main(argv: list[str]) -> int:
    """Measure both cells, print a table of medians; ``--save`` keeps the rows."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks startup", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each (after one)")
    save_flag(parser)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for name, cell in run_cells(folder).items():
            cell()  # warm-up: bytecode caches, the server binary in the page cache
            walls = [cell() for _ in range(args.repeat)]
            rows.append({"cell": "run", "system": name, "wall_s": statistics.median(walls)})
            print(json.dumps(rows[-1] | {"walls": [round(w, 3) for w in walls]}), flush=True)
        with redis_server() as url:
            for name, burst in burst_cells(url, folder).items():
                burst()
                found = [burst() for _ in range(args.repeat)]
                start = statistics.median(f[0] for f in found)
                stop = statistics.median(f[1] for f in found)
                rows.append({"cell": "burst", "system": name, "start_s": start, "exit_s": stop})
                print(json.dumps(rows[-1]), flush=True)
    stamp, cpus = time.time(), os.cpu_count()
    rows = [{k: round(v, 3) if isinstance(v, float) else v for k, v in r.items()} for r in rows]
    print(f"\nmedians of {args.repeat} after a warm-up, {cpus} cores")
    print("| command | wall s |")
    print("|---|---:|")
    for r in (r for r in rows if r["cell"] == "run"):
        print(f"| {r['system']} | {r['wall_s']} |")
    print("\n| burst worker | launch to first job, s | last job end to exit, s |")
    print("|---|---:|---:|")
    for r in (r for r in rows if r["cell"] == "burst"):
        print(f"| {r['system']} | {r['start_s']} | {r['exit_s']} |")
    keep("startup", [r | {"at": stamp, "cpus": cpus} for r in rows], args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
