"""One Redis vs a Redis Cluster of 3 primaries, side by side in one run: the fan-in and the
diamonds cells of ``compare``, run many at once (one run lives on one shard, so only
concurrent runs can spread), with the same ``dagrq worker`` processes against each.

Both setups are Debian's redis-server (7.0) on loopback, persistence off, no replicas (a
replica's CPU is not the primaries' work). Reported per cell: wall seconds, runs/s and
nodes/s, and each primary's share of the Redis CPU the cell used (``INFO cpu``: user + sys,
before and after), with the spread ``max/min - 1`` of those shares. Medians of ``--repeat``.

    python -m benchmarks cluster [--repeat 3] [--fanins 12 --width 200] [--diamonds 600]
                                 [--shards 6] [--workers 6]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import redis

from . import dags
from .keep import keep, save_flag
from .pool import ROOT
from .server import cluster_ports

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_CLI = "/usr/bin/redis-cli"


@contextmanager
def servers(count: int, folder: Path, *, cluster: bool) -> Iterator[list[int]]:
    """``count`` redis-server processes on free loopback ports (cluster-enabled and joined
    into one cluster when ``cluster``); their ports."""
    ports = cluster_ports(count)
    procs = []
    try:
        for port in ports:
            (folder / str(port)).mkdir(parents=True)
            argv = [REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
            argv += ["--appendonly", "no", "--dir", str(folder / str(port))]
            if cluster:
                argv += ["--cluster-enabled", "yes", "--cluster-node-timeout", "5000"]
            procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL))
        for port in ports:
            _until(lambda p=port: _pings(p), 10, f"redis-server on {port}")
        if cluster:
            create = [REDIS_CLI, "--cluster", "create", *(f"127.0.0.1:{p}" for p in ports)]
            subprocess.run([*create, "--cluster-yes"], check=True, capture_output=True)
            _until(lambda: all(_cluster_ok(p) for p in ports), 30, "the cluster")
        yield ports
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()


def _pings(port: int) -> bool:
    try:
        return bool(redis.Redis(port=port, socket_timeout=1).ping())
    except redis.ConnectionError:
        return False


def _cluster_ok(port: int) -> bool:
    return redis.Redis(port=port).cluster("INFO").get("cluster_state") == "ok"


def _until(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} not ready after {timeout_s} s")
        time.sleep(0.05)


def _cpu(ports: list[int]) -> dict[int, float]:
    out = {}
    for port in ports:
        info = redis.Redis(port=port).info("cpu")
        out[port] = float(info["used_cpu_user"]) + float(info["used_cpu_sys"])
    return out


def _wait_done(conn: Any, run_ids: list[str], cap_s: float) -> float | None:
    """Seconds from now until every run's final body marked ``bench:done:<run>`` (each read on the
    run's shard), or None past the cap."""
    from dagrq.cluster import for_run

    t0, pending = time.time(), set(run_ids)
    while pending and time.time() - t0 < cap_s:
        for run_id in list(pending):
            if for_run(conn, run_id).exists(f"bench:done:{run_id}"):
                pending.discard(run_id)
        time.sleep(0.02)
    return None if pending else time.time() - t0


def cell(
    name: str, url: str, ports: list[int], target: Path, runs: int, width: int, cap_s: float
) -> dict[str, Any]:
    """One cell: ``runs`` runs submitted at once (fan-in: ``1 -> width -> 1`` each), timed
    to their last end, with each primary's share of the Redis CPU spent."""
    from dagrq import loader
    from dagrq.connection import connect

    conn = connect(url)
    dag = loader.load(f"{target}:{'fanin' if name == 'fan-in' else 'diamond'}")
    before = _cpu(ports)
    t0 = time.time()
    params = {"n": width} if name == "fan-in" else {}
    ids = [dag.submit(conn, **params).id for _ in range(runs)]
    submitted = time.time() - t0
    left = _wait_done(conn, ids, cap_s)
    wall = None if left is None else submitted + left
    spent = {p: c - before[p] for p, c in _cpu(ports).items()}
    total = sum(spent.values()) or 1.0
    shares = {str(p): round(s / total, 3) for p, s in spent.items()}
    nodes = runs * (width + 2 if name == "fan-in" else 4)
    return {
        "cell": name,
        "setup": "cluster" if len(ports) > 1 else "one",
        "runs": runs,
        "wall_s": round(wall, 3) if wall else None,
        "runs_per_s": round(runs / wall, 1) if wall else None,
        "nodes_per_s": round(nodes / wall, 1) if wall else None,
        "redis_cpu_s": round(total, 3),
        "cpu_share": shares,
        "spread": round(max(shares.values()) / max(min(shares.values()), 1e-9) - 1, 3),
        "submit_s": round(submitted, 3),
    }


@contextmanager
def workers(url: str, target: Path, processes: int) -> Iterator[None]:
    """One ``dagrq worker`` pool serving both DAGs (on a cluster: a process per shard at
    least), warmed up by one run of each."""
    from dagrq.workers.processes import Processes, worker_argv

    procs = Processes(env={"DAGRQ_URL": url, "DAGRQ_LOG": "WARNING"}, cwd=ROOT)
    procs.start(worker_argv(f"{target}:fanin", f"{target}:diamond", "-c", str(processes)))
    try:
        time.sleep(3)
        yield
    finally:
        procs.stop(grace_s=15)


def main(argv: list[str]) -> int:
    """Run the cells on one Redis, then on a 3-primary cluster; print JSON lines."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks cluster")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--fanins", type=int, default=12, help="concurrent fan-in runs")
    parser.add_argument("--width", type=int, default=200, help="each fan-in's width")
    parser.add_argument("--diamonds", type=int, default=600, help="concurrent diamond runs")
    parser.add_argument("--shards", type=int, default=6)
    parser.add_argument("--workers", type=int, default=6, help="worker processes, both setups")
    parser.add_argument("--cap", type=float, default=300.0)
    save_flag(parser)
    args = parser.parse_args(argv)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        target = dags.write(Path(tmp), 10)
        for setup, count in (("one", 1), ("cluster", 3)):
            with servers(count, Path(tmp) / setup, cluster=count > 1) as ports:
                url = f"redis://127.0.0.1:{ports[0]}/0"
                if count > 1:
                    nodes = ",".join(f"127.0.0.1:{p}" for p in ports)
                    url = f"redis+cluster://{nodes}?shards={args.shards}"
                with workers(url, target, args.workers):
                    for name, runs in (("fan-in", args.fanins), ("diamonds", args.diamonds)):
                        done = [
                            cell(name, url, ports, target, runs, args.width, args.cap)
                            for _ in range(args.repeat)
                        ]
                        rows.append(_median(done))
                        print(json.dumps(rows[-1]), flush=True)
    keep("cluster", rows, args.save)
    return 0


def _median(done: list[dict[str, Any]]) -> dict[str, Any]:
    """The repeat with the median wall time, with the min-max of the others."""
    timed = sorted((r for r in done if r["wall_s"] is not None), key=lambda r: r["wall_s"])
    if not timed:
        return done[-1]
    row = dict(timed[len(timed) // 2], repeats=len(done))
    row["wall_s_min"], row["wall_s_max"] = timed[0]["wall_s"], timed[-1]["wall_s"]
    row["spread_median"] = statistics.median(r["spread"] for r in timed)
    return row


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
