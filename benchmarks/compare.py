"""dagrq vs RQ's ``depends_on`` vs Celery's chord (vs plain RQ jobs), side by side in one run.

Every system gets the same Redis (started here, persistence off), the same number of worker
processes and no-op bodies. RQ and dagrq both use RQ's ``SimpleWorker`` (the forking worker costs
~30 ms per job on this machine for both alike); Celery uses its prefork pool with the same
concurrency. The end of a join is observed the same way for every system: its body writes
``bench:done:<token>`` and the driver polls that key every 5 ms (plain jobs: a counter).

    python -m benchmarks compare --quick          # < 2 minutes, smoke
    python -m benchmarks compare                  # the full table (minutes; see --help-ish args)
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from rq import Queue, Worker
from rq.job import Dependency

from .server import command_count, fake_join, redis_server

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"

DAG_SOURCE = """
from rq import get_current_job
from dagrq import DAG

fanin = DAG("cmp_fanin")
fanin100 = DAG("cmp_fanin100")
diamond = DAG("cmp_diamond")


def _mark() -> None:
    import time
    job = get_current_job()
    job.connection.set(f"bench:done:{job.kwargs['run']}", repr(time.time()))


@fanin.node(name="items")
def items1(n: int) -> list[int]:
    return list(range(n))


@fanin.map("items", name="work")
def work1(items: int) -> None:
    return None


@fanin.node(name="join")
def join1(work: list[None]) -> None:
    _mark()


@fanin100.node(name="items")
def items100(n: int) -> list[int]:
    return list(range(n))


@fanin100.map("items", chunk=100, name="work")
def work100(items: int) -> None:
    return None


@fanin100.node(name="join")
def join100(work: list[None]) -> None:
    _mark()


@diamond.node
def a() -> int:
    return 1


@diamond.node
def b(a: int) -> int:
    return a


@diamond.node
def c(a: int) -> int:
    return a


@diamond.node
def d(b: int, c: int) -> None:
    _mark()
"""


class Workers:
    """Worker processes of one system, started once and reused for all its cells."""

    def __init__(self, system: str, url: str, folder: Path, n: int) -> None:
        env = dict(
            os.environ,
            BENCH_URL=url,
            DAGRQ_LOG="WARNING",
            PYTHONPATH=f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        )
        if system.startswith("dagrq"):
            attr = {"dagrq": "fanin", "dagrq_chunk100": "fanin100", "dagrq_diamond": "diamond"}
            cmd = [
                sys.executable,
                "-m",
                "dagrq",
                "worker",
                f"{folder / 'cmp.py'}:{attr[system]}",
                "--url",
                url,
                "--worker-class",
                "simple",
            ]
            argv = [cmd] * n
        elif system.startswith("rq"):
            cmd = [
                sys.executable,
                "-m",
                "rq.cli",
                "worker",
                "bench",
                "--url",
                url,
                "-q",
                "-w",
                "rq.worker.SimpleWorker",
            ]
            argv = [cmd] * n
        else:
            argv = [
                [
                    sys.executable,
                    "-m",
                    "celery",
                    "-A",
                    "benchmarks.celery_app",
                    "worker",
                    "-c",
                    str(n),
                    "--pool",
                    "prefork",
                    "-l",
                    "WARNING",
                    "--without-heartbeat",
                    "--without-mingle",
                    "--without-gossip",
                ]
            ]
        self.procs = [
            subprocess.Popen(
                a, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
            )
            for a in argv
        ]
        conn = redis.Redis.from_url(url)
        deadline = time.monotonic() + 30
        if system != "celery":
            while Worker.count(connection=conn) < n and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            time.sleep(3)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()


def _wait(conn: redis.Redis, key: str, target: int | None, cap_s: float, t0: float) -> float | None:
    while time.time() - t0 < cap_s:
        value = conn.get(key)
        if value is not None and (target is None or int(value) >= target):
            return time.time() - t0
        time.sleep(0.005)
    return None


def fanin(system: str, conn: redis.Redis, n: int, cap_s: float, folder: Path) -> dict[str, Any]:
    """One ``1 -> n -> 1`` fan-in; wall time until the join's body has run."""
    conn.config_resetstat()
    mem0 = int(conn.info("memory")["used_memory"])
    t0 = time.time()
    gap = None
    if system.startswith("dagrq"):
        from dagrq import loader

        dag = loader.load(f"{folder / 'cmp.py'}:{'fanin' if system == 'dagrq' else 'fanin100'}")
        run = dag.submit(conn, n=n)
        token, target = run.id, None
    elif system == "rq_native":
        q = Queue("bench", connection=conn)
        token, target = uuid.uuid4().hex, None
        root = q.enqueue("benchmarks.bodies.noop")
        with conn.pipeline() as pipe:
            parents = q.enqueue_many(
                [Queue.prepare_data("benchmarks.bodies.noop", depends_on=root) for _ in range(n)],
                pipeline=pipe,
            )
            pipe.execute()
        q.enqueue("benchmarks.bodies.mark", token, depends_on=Dependency(jobs=parents))
    elif system == "rq_plain":
        q = Queue("bench", connection=conn)
        token, target = uuid.uuid4().hex, n + 2
        with conn.pipeline() as pipe:
            q.enqueue_many(
                [Queue.prepare_data("benchmarks.bodies.count", (token,)) for _ in range(n + 2)],
                pipeline=pipe,
            )
            pipe.execute()
    else:
        from celery import chord

        from .celery_app import mark, noop

        token, target = uuid.uuid4().hex, None
        chord([noop.s() for _ in range(n)], mark.s(token)).apply_async()
    key = f"bench:count:{token}" if system == "rq_plain" else f"bench:done:{token}"
    wall = _wait(conn, key, target, cap_s, t0)
    cmds = command_count(conn)
    mem = int(conn.info("memory")["used_memory"]) - mem0
    if wall is not None and system.startswith("dagrq"):
        nodes = run.status().nodes
        gap = (nodes["join"].started_at or 0) - (nodes["work"].ended_at or 0)
    return {
        "system": system,
        "n": n,
        "wall_s": None if wall is None else round(wall, 3),
        "capped": wall is None,
        "cap_s": cap_s,
        "cmds_per_arrival": round(cmds / n, 1),
        "bytes_per_arrival": round(mem / n, 1),
        "last_parent_to_join_ms": None if gap is None else round(gap * 1000, 1),
    }


def diamonds(
    system: str, conn: redis.Redis, runs: int, folder: Path, cap_s: float
) -> dict[str, Any]:
    """``runs`` concurrent A -> B, C -> D runs: runs/s and latency percentiles."""
    t0 = time.time()
    submitted: list[tuple[str, float]] = []
    if system == "dagrq_diamond":
        from dagrq import loader

        dag = loader.load(f"{folder / 'cmp.py'}:diamond")
        for _ in range(runs):
            submitted.append((dag.submit(conn).id, time.time()))
    else:
        q = Queue("bench", connection=conn)
        for _ in range(runs):
            token = uuid.uuid4().hex
            a = q.enqueue("benchmarks.bodies.noop")
            b = q.enqueue("benchmarks.bodies.noop", depends_on=a)
            c = q.enqueue("benchmarks.bodies.noop", depends_on=a)
            q.enqueue("benchmarks.bodies.mark", token, depends_on=Dependency(jobs=[b, c]))
            submitted.append((token, time.time()))
    latencies, done = [], 0
    deadline = time.time() + cap_s
    pending = dict(submitted)
    while pending and time.time() < deadline:
        keys = list(pending)
        values = conn.mget([f"bench:done:{k}" for k in keys])
        for k, v in zip(keys, values, strict=True):
            if v is not None:
                latencies.append(float(v) - pending.pop(k))
                done += 1
        time.sleep(0.02)
    wall = time.time() - t0
    latencies.sort()
    return {
        "system": system,
        "runs": runs,
        "finished": done,
        "wall_s": round(wall, 3),
        "runs_per_s": round(done / wall, 1),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1) if latencies else None,
        "p95_ms": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1) if latencies else None,
    }


def ceiling(conn: redis.Redis, arrivals: int) -> dict[str, Any]:
    """The arrival step alone: complete.lua per round trip, and pipelined (no RQ at all)."""
    from dagrq import join, keys

    out: dict[str, Any] = {"arrivals": arrivals}
    for mode in ("round_trip", "pipelined"):
        run_id, specs, child = fake_join(conn, arrivals)
        t0 = time.perf_counter()
        if mode == "round_trip":
            for s in specs:
                join.complete(conn, run_id, s, [child], "succeeded", ttl_s=60)
        else:
            script = join.complete_script(conn)
            for start in range(0, arrivals, 500):
                with conn.pipeline(transaction=False) as pipe:
                    for s in specs[start : start + 500]:
                        k, a = join.complete_call(run_id, s, [child], "succeeded", ttl_s=60)
                        script(keys=k, args=a, client=pipe)
                    pipe.execute()
        out[f"{mode}_per_s"] = round(arrivals / (time.perf_counter() - t0))
        assert conn.hget(keys.nodes_key(run_id), "j:state") == b"queued"
    return out


SYSTEMS = ("dagrq", "dagrq_chunk100", "rq_native", "rq_plain", "celery")
LABELS = {
    "dagrq": "dagrq, 1 RQ job per parent",
    "dagrq_chunk100": "dagrq, chunk=100",
    "rq_native": "RQ depends_on",
    "rq_plain": "RQ plain jobs, no join",
    "celery": "Celery chord",
}


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    sizes = [10, 100] if quick else [10, 100, 1000, 3000, 10000]
    repeat = 1 if quick else 3
    cap = 10.0 if quick else 120.0
    workers = 2
    try:
        import celery  # noqa: F401

        systems = list(SYSTEMS)
    except ImportError:
        systems = [s for s in SYSTEMS if s != "celery"]
        print("celery not installed: skipping Celery (pip install -e '.[bench]')")
    rows: list[dict[str, Any]] = []
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "cmp.py").write_text(DAG_SOURCE)
        os.environ["BENCH_URL"] = url  # for the Celery app imported in this process
        conn = redis.Redis.from_url(url)
        for system in systems:
            pool = Workers(system, url, folder, workers)
            try:
                for n in sizes:
                    reps = 1 if n >= 10000 else repeat
                    runs = []
                    for _ in range(reps):
                        runs.append(fanin(system, conn, n, cap, folder))
                        if runs[-1]["capped"]:
                            break  # once capped, repeating only spends the cap again
                    done = [r["wall_s"] for r in runs if r["wall_s"] is not None]
                    row = dict(runs[-1], shape="fan-in", repeats=reps)
                    row["wall_s"] = statistics.median(done) if len(done) == reps else None
                    row["min_s"], row["max_s"] = (min(done), max(done)) if done else (None, None)
                    row["capped"] = len(done) < reps
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                    if row["capped"]:
                        break  # a larger N would only hit the cap again
            finally:
                pool.stop()
        for system in ("dagrq_diamond", "rq_native"):
            pool = Workers(system, url, folder, workers)
            try:
                row = dict(
                    diamonds(system, conn, 50 if quick else 1000, folder, 10 if quick else 90),
                    shape="diamonds",
                )
                rows.append(row)
                print(json.dumps(row), flush=True)
            finally:
                pool.stop()
        row = dict(ceiling(conn, 2000 if quick else 20000), shape="ceiling")
        rows.append(row)
        print(json.dumps(row), flush=True)
    stamp = time.time()
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "compare.jsonl", "a") as fh:
        for row in rows:
            fh.write(json.dumps({**row, "at": stamp, "quick": quick}) + "\n")
    table = markdown(rows)
    print(table)
    if not quick:
        plot(rows, ROOT / "docs" / "bench-fanin.png")
        write_docs(table)
    return 0


def markdown(rows: list[dict[str, Any]]) -> str:
    """The fan-in table with ratios to dagrq (one job per parent), and the other shapes."""
    fan = [r for r in rows if r["shape"] == "fan-in"]
    base = {r["n"]: r["wall_s"] for r in fan if r["system"] == "dagrq"}
    out = [
        "| N | system | wall s (median, min-max) | vs dagrq | cmds / arrival | bytes / arrival "
        "| last parent -> join |",
        "|---:|---|---:|---:|---:|---:|---:|",
    ]
    for r in sorted(fan, key=lambda r: (r["n"], SYSTEMS.index(r["system"]))):
        if r["capped"]:
            wall, ratio = f"capped at {r['cap_s']:g} s", "—"
        else:
            wall = f"{r['wall_s']:.3f} ({r['min_s']:.3f}-{r['max_s']:.3f})"
            b = base.get(r["n"])
            ratio = f"{r['wall_s'] / b:.2f}x" if b else "—"
        gap = (
            f"{r['last_parent_to_join_ms']} ms"
            if r.get("last_parent_to_join_ms") is not None
            else ""
        )
        out.append(
            f"| {r['n']:,} | {LABELS[r['system']]} | {wall} | {ratio} "
            f"| {r['cmds_per_arrival']} | {r['bytes_per_arrival']} | {gap} |"
        )
    out.append("")
    out.append(
        "| concurrent diamonds | finished | runs/s | p50 ms (from submit, all queued at once) "
        "| p95 ms |"
    )
    out.append("|---|---:|---:|---:|---:|")
    for r in rows:
        if r["shape"] == "diamonds":
            out.append(
                f"| {r['system']} | {r['finished']}/{r['runs']} | {r['runs_per_s']} "
                f"| {r['p50_ms']} | {r['p95_ms']} |"
            )
    for r in rows:
        if r["shape"] == "ceiling":
            out.append("")
            out.append(
                f"Arrival step alone ({r['arrivals']:,} arrivals at one join): "
                f"{r['round_trip_per_s']:,}/s one call per round trip, "
                f"{r['pipelined_per_s']:,}/s pipelined."
            )
    return "\n".join(out)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """Log-log wall time vs N, one line per system."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for system in SYSTEMS:
        pts = [
            (r["n"], r["wall_s"])
            for r in rows
            if r["shape"] == "fan-in" and r["system"] == system and r["wall_s"]
        ]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=LABELS[system])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("fan-in width N")
    ax.set_ylabel("wall time, s (median)")
    ax.set_title("1 -> N -> 1 fan-in, 2 workers, no-op bodies")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def write_docs(table: str) -> None:
    """Put the table between the markers in docs/benchmarks.md."""
    import platform

    import celery
    import rq

    doc = ROOT / "docs" / "benchmarks.md"
    text = doc.read_text()
    start, end = "<!-- compare:start -->", "<!-- compare:end -->"
    machine = (
        f"{os.cpu_count()} cores, Python {platform.python_version()}, rq {rq.__version__}, "
        f"celery {celery.__version__}"
    )
    body = (
        f"{start}\n\nMachine: {machine}.\n\n{table}\n\n![wall time vs N](bench-fanin.png)\n\n{end}"
    )
    if start in text:
        text = text[: text.index(start)] + body + text[text.index(end) + len(end) :]
    else:
        text += "\n## Side by side: dagrq, RQ, Celery\n\n" + body + "\n"
    doc.write_text(text)
