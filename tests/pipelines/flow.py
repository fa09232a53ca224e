"""Flow control under real workers: each body records when it started and ended (and in
which process) in Redis, so a test can check what ran at once from the timestamps."""

from __future__ import annotations

import os
import time

from rq import get_current_job

from dagrq import DAG


def _record(kind: str, hold: float) -> str:
    job = get_current_job()
    assert job is not None
    conn, run = job.connection, job.kwargs["run"]
    who = f"{run}|{job.kwargs['node']}.{os.getpid()}"  # one attempt
    conn.rpush(f"test:flow:{kind}:start", f"{who}|{time.time()!r}")
    time.sleep(hold)
    conn.rpush(f"test:flow:{kind}:end", f"{who}|{time.time()!r}")
    return run


limited = DAG("t_flow_limited")


@limited.node
def first() -> int:
    return 1


@limited.node(concurrency=3, retry=5)
def body(first: int, hold: float = 0.05) -> str:
    return _record("limited", hold)


fair = DAG("t_flow_fair")


@fair.node(concurrency=2, concurrency_key="tenant")
def work(tenant: str) -> str:
    return _record("fair", 0.05)


rated = DAG("t_flow_rated")


@rated.node(rate_limit="20/s")
def call() -> str:
    return _record("rated", 0.0)


few = DAG("t_flow_few", max_active_runs=2)


@few.node
def step() -> str:
    return _record("few", 0.2)


@few.node
def after(step: str) -> str:
    return step


ordered = DAG("t_flow_ordered")


@ordered.node
def task(hold: float = 0.0) -> str:
    return _record("ordered", hold)


pooled = DAG("t_flow_pooled")


@pooled.node(pool="t_flow_wh", pool_slots=1)
def load() -> str:
    return _record("pooled", 0.1)


@pooled.node(pool="t_flow_wh", pool_slots=2)
def heavy(load: str) -> str:
    return _record("pooled", 0.1)
