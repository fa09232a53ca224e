"""One measurement each: a fan-in, concurrent diamonds, layered runs, a chain, the ceiling.

Every cell starts the clock before it creates any job, and sees its end the same way for every
system: the final body writes ``bench:done:<token>`` (plain jobs: a counter) and the driver
polls that key every 5 ms. Commands come from ``INFO commandstats`` (reset per cell, Lua's
inner calls included) and memory from ``INFO memory``, both over the whole cell.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.job import Dependency, Job
from rq.utils import utcparse

from .dags import LAYERS, WIDTH, layer_parents
from .server import command_count, fake_join


@dataclass(frozen=True)
class Bench:
    """What every cell needs: the server, and the pipelines file the dagrq workers load."""

    conn: redis.Redis
    dags: Path

    def dag(self, attr: str) -> Any:
        """The dagrq DAG ``attr`` of the pipelines file."""
        from dagrq import loader

        return loader.load(f"{self.dags}:{attr}")


def _wait(conn: redis.Redis, key: str, target: int | None, cap_s: float, t0: float) -> float | None:
    """Seconds from ``t0`` until ``key`` exists (or counts ``target``); None past the cap."""
    while time.time() - t0 < cap_s:
        value = conn.get(key)
        if value is not None and (target is None or int(value) >= target):
            return time.time() - t0
        time.sleep(0.005)
    return None


def _wait_all(conn: redis.Redis, tokens: dict[str, float], cap_s: float) -> list[float]:
    """Latencies (end minus submit time) of the tokens that finished within the cap."""
    pending, latencies = dict(tokens), []
    deadline = time.time() + cap_s
    while pending and time.time() < deadline:
        names = list(pending)
        for name, value in zip(names, conn.mget([f"bench:done:{k}" for k in names]), strict=True):
            if value is not None:
                latencies.append(float(value) - pending.pop(name))
        time.sleep(0.01)
    return sorted(latencies)


def fanin(system: str, b: Bench, n: int, cap_s: float) -> dict[str, Any]:
    """One ``1 -> n -> 1`` fan-in; wall time until the join's body has run."""
    conn = b.conn
    conn.config_resetstat()
    mem0 = int(conn.info("memory")["used_memory"])
    t0 = time.time()
    token, target, q = uuid.uuid4().hex, None, Queue("bench", connection=conn)
    if system.startswith("dagrq"):
        run = b.dag("fanin100" if system == "dagrq_chunk100" else "fanin").submit(conn, n=n)
        token = run.id
    elif system == "rq_native":
        # every job exists, and the join waits on every parent, before anything runs: the
        # root is released last (as dagrq creates all of a run's jobs at submit)
        root = q.create_job("benchmarks.bodies.noop")
        root.save()
        with conn.pipeline() as pipe:
            parents = q.enqueue_many(
                [Queue.prepare_data("benchmarks.bodies.noop", depends_on=root) for _ in range(n)],
                pipeline=pipe,
            )
            pipe.execute()
        join = q.enqueue("benchmarks.bodies.mark", token, depends_on=Dependency(jobs=parents))
        q.enqueue_job(root)
    elif system == "rq_plain":
        target = n + 2
        with conn.pipeline() as pipe:
            q.enqueue_many(
                [Queue.prepare_data("benchmarks.bodies.count", (token,)) for _ in range(n + 2)],
                pipeline=pipe,
            )
            pipe.execute()
    else:
        from celery import chord

        from .celery_app import mark, noop

        result = chord([noop.s() for _ in range(n)], mark.s(token)).apply_async()
    key = f"bench:count:{token}" if system == "rq_plain" else f"bench:done:{token}"
    wall = _wait(conn, key, target, cap_s, t0)
    cmds = command_count(conn)
    mem = int(conn.info("memory")["used_memory"]) - mem0
    gap = None
    if wall is not None:
        if system.startswith("dagrq"):
            nodes = run.status().nodes
            gap = (nodes["join"].started_at or 0) - (nodes["work"].ended_at or 0)
        elif system == "rq_native":
            gap = _rq_gap(conn, join, parents)
        elif system == "celery":
            gap = _celery_gap(conn, token, result)
    return {
        "cell": "fan-in",
        "system": system,
        "n": n,
        "wall_s": None if wall is None else round(wall, 3),
        "capped": wall is None,
        "cap_s": cap_s,
        "cmds_per_arrival": round(cmds / n, 1),
        "bytes_per_arrival": round(mem / n, 1),
        "last_parent_to_join_ms": None if gap is None else round(gap * 1000, 1),
    }


def _rq_gap(conn: redis.Redis, join: Job, parents: list[Job]) -> float | None:
    """RQ: the join's ``started_at`` minus the last parent's ``ended_at``."""
    with conn.pipeline(transaction=False) as pipe:
        pipe.hget(join.key, "started_at")
        for p in parents:
            pipe.hget(p.key, "ended_at")
        started, *ended = pipe.execute()
    if started is None or not all(ended):
        return None
    last = max(utcparse(e.decode()) for e in ended)
    return (utcparse(started.decode()) - last).total_seconds()


def _celery_gap(conn: redis.Redis, token: str, result: Any) -> float | None:
    """Celery: the chord body's mark minus the last header task's ``date_done``, read from the
    result backend's keys directly (no AsyncResult round trips or subscriptions)."""
    ids = [r.id for r in result.parent.results]
    metas = conn.mget([f"celery-task-meta-{i}" for i in ids])
    if not ids or not all(metas):
        return None
    done = [datetime.fromisoformat(json.loads(m)["date_done"]) for m in metas if m]
    mark = float(conn.get(f"bench:done:{token}") or 0)
    return mark - max(d.replace(tzinfo=d.tzinfo or UTC).timestamp() for d in done)


def _concurrent(
    cell: str, system: str, b: Bench, runs: int, cap_s: float, submit: Callable[[], str]
) -> dict[str, Any]:
    """Submit ``runs`` runs at once (``submit`` returns a run's token) and wait for them."""
    t0 = time.time()
    submitted: dict[str, float] = {}
    for _ in range(runs):
        submitted[submit()] = time.time()
    latencies = _wait_all(b.conn, submitted, cap_s)
    return _runs_row(cell, system, runs, latencies, time.time() - t0)


def diamonds(system: str, b: Bench, runs: int, cap_s: float) -> dict[str, Any]:
    """``runs`` concurrent a -> (b, c) -> d runs, all submitted at once."""
    if system.startswith("dagrq"):
        dag = b.dag("diamond")
        return _concurrent("diamonds", system, b, runs, cap_s, lambda: dag.submit(b.conn).id)
    if system == "rq_native":
        q = Queue("bench", connection=b.conn)

        def submit() -> str:
            token = uuid.uuid4().hex
            a = q.enqueue("benchmarks.bodies.noop")
            left = q.enqueue("benchmarks.bodies.noop", depends_on=a)
            right = q.enqueue("benchmarks.bodies.noop", depends_on=a)
            q.enqueue("benchmarks.bodies.mark", token, depends_on=Dependency(jobs=[left, right]))
            return token

        return _concurrent("diamonds", system, b, runs, cap_s, submit)
    from celery import chain, chord

    from .celery_app import mark, noop

    def submit_celery() -> str:
        token = uuid.uuid4().hex
        chain(noop.s(), chord([noop.s(), noop.s()], mark.si(None, token))).apply_async()
        return token

    return _concurrent("diamonds", system, b, runs, cap_s, submit_celery)


def layered(system: str, b: Bench, runs: int, cap_s: float) -> dict[str, Any]:
    """``runs`` concurrent runs of the layered graph (LAYERS x WIDTH nodes, then a sink)."""
    if system == "dagrq":
        dag = b.dag("layered")
        return _concurrent("layered", system, b, runs, cap_s, lambda: dag.submit(b.conn).id)
    q = Queue("bench", connection=b.conn)

    def submit() -> str:
        token = uuid.uuid4().hex
        above: list[Job] = []
        for layer in range(LAYERS):
            above = [
                q.enqueue(
                    "benchmarks.bodies.noop",
                    depends_on=Dependency(jobs=deps) if deps else None,
                )
                for deps in ([above[p] for p in layer_parents(layer, i)] for i in range(WIDTH))
            ]
        q.enqueue("benchmarks.bodies.mark", token, depends_on=Dependency(jobs=above))
        return token

    return _concurrent("layered", system, b, runs, cap_s, submit)


def _runs_row(
    cell: str, system: str, runs: int, latencies: list[float], wall: float
) -> dict[str, Any]:
    def pct(p: float) -> float | None:
        if not latencies:
            return None
        return round(latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000, 1)

    return {
        "cell": cell,
        "system": system,
        "runs": runs,
        "finished": len(latencies),
        "wall_s": round(wall, 3),
        "runs_per_s": round(len(latencies) / wall, 2),
        "p50_ms": pct(0.5),
        "p95_ms": pct(0.95),
    }


def chain(system: str, b: Bench, n: int, cap_s: float) -> dict[str, Any]:
    """A chain of ``n`` dagrq nodes plus its end, or ``n + 1`` plain RQ jobs: ms per node."""
    t0 = time.time()
    if system.startswith("dagrq"):
        token = b.dag("chain").submit(b.conn).id
        wall = _wait(b.conn, f"bench:done:{token}", None, cap_s, t0)
    else:
        q = Queue("bench", connection=b.conn)
        token = uuid.uuid4().hex
        with b.conn.pipeline() as pipe:
            q.enqueue_many(
                [Queue.prepare_data("benchmarks.bodies.count", (token,)) for _ in range(n + 1)],
                pipeline=pipe,
            )
            pipe.execute()
        wall = _wait(b.conn, f"bench:count:{token}", n + 1, cap_s, t0)
    return {
        "cell": "chain",
        "system": system,
        "nodes": n + 1,
        "capped": wall is None,
        "wall_s": None if wall is None else round(wall, 3),
        "ms_per_node": None if wall is None else round(wall / (n + 1) * 1000, 2),
    }


def killed(b: Bench, cap_s: float) -> dict[str, Any]:
    """SIGKILL the process running a node (default worker settings, retry=1): seconds from
    the kill to the node's second attempt starting, and whether the worker went on."""
    import os
    import signal

    conn, dag = b.conn, b.dag("victim")
    run = dag.submit(conn)
    t0 = time.time()
    pid = None
    while pid is None and time.time() - t0 < cap_s:
        pid = conn.get(f"bench:pid:{run.id}")
        time.sleep(0.005)
    assert pid is not None, "the victim never started"
    os.kill(int(pid), signal.SIGKILL)
    killed_at = time.time()
    again = None
    while again is None and time.time() - killed_at < cap_s:
        if int(conn.get(f"bench:attempt:{run.id}") or 0) >= 2:
            again = time.time() - killed_at
        time.sleep(0.005)
    done = _wait(conn, f"bench:done:{run.id}", None, cap_s, killed_at)
    return {
        "cell": "killed",
        "system": "dagrq",
        "rerun_s": None if again is None else round(again, 3),
        "run_ended": done is not None,
    }


def memory(
    b: Bench, pids: Callable[[], list[int]], marks: list[int], cap_s: float
) -> dict[str, Any]:
    """Resident memory of each pooled worker process after ``marks`` no-op nodes in total,
    run as fan-ins of 100 nodes, ten at a time: flat memory means no growth per node. (One
    10,000-item run would measure the run's size instead: the process that expands its map
    or runs its join holds every item at once, and keeps that high-water mark.)"""
    import psutil

    dag, done, rss = b.dag("fanin"), 0, {}
    for mark in marks:
        while done < mark:
            size = min(100 * 10, mark - done)
            runs = [dag.submit(b.conn, n=n - 3) for n in _split(size, 100)]  # + items, map, join
            for run in runs:
                assert _wait(b.conn, f"bench:done:{run.id}", None, cap_s, time.time())
            done += size
        time.sleep(0.5)  # let the processes settle after the run
        rss[mark] = [round(psutil.Process(p).memory_info().rss / 2**20, 1) for p in pids()]
    first, last = rss[marks[0]], rss[marks[-1]]
    growth = max(b_ / a_ for a_, b_ in zip(first, last, strict=True)) - 1
    return {
        "cell": "memory",
        "system": "dagrq",
        "rss_mib": {str(k): v for k, v in rss.items()},
        "growth": round(growth, 3),
    }


def _split(total: int, size: int) -> list[int]:
    """``total`` as parts of ``size`` (the last may be smaller, at least 4: a fan-in of one)."""
    parts = [size] * (total // size)
    if total % size:
        parts.append(max(4, total % size))
    return parts


def ceiling(conn: redis.Redis, arrivals: int) -> dict[str, Any]:
    """The arrival step alone: complete.lua per round trip, and pipelined (no RQ at all)."""
    from dagrq.store import runkeys, scripts

    out: dict[str, Any] = {"cell": "ceiling", "system": "dagrq", "arrivals": arrivals}
    for mode in ("round_trip", "pipelined"):
        run_id, specs, child = fake_join(conn, arrivals)
        t0 = time.perf_counter()
        if mode == "round_trip":
            for s in specs:
                scripts.complete(
                    conn, run_id, s, [child], scripts.Report("succeeded"), ttl_s=60, version="b"
                )
        else:
            script = scripts.complete_script(conn)
            for start in range(0, arrivals, 500):
                with conn.pipeline(transaction=False) as pipe:
                    for s in specs[start : start + 500]:
                        k, a = scripts.complete_call(
                            run_id, s, [child], scripts.Report("succeeded"), ttl_s=60, version="b"
                        )
                        script(keys=k, args=a, client=pipe)
                    pipe.execute()
        out[f"{mode}_per_s"] = round(arrivals / (time.perf_counter() - t0))
        assert conn.hget(runkeys.nodes_key(run_id), "j:state") == b"queued"
    return out
