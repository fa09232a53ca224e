"""A -> B, C -> D. D counts its executions per run in Redis (for the exactly-once test)."""

from __future__ import annotations

import time

from rq import get_current_job

from dagrq import DAG

dag = DAG("t_diamond")


@dag.node
def a(x: int, pause_ms: int = 0) -> int:
    time.sleep(pause_ms / 1000)
    return x


@dag.node
def b(a: int, pause_ms: int = 0) -> int:
    time.sleep(pause_ms / 1000)
    return a * 2


@dag.node
def c(a: int, pause_ms: int = 0) -> int:
    time.sleep(pause_ms / 1000)
    return a * 3


@dag.node
def d(b: int, c: int) -> dict[str, int]:
    job = get_current_job()
    if job is not None:  # count real executions on the worker, per run
        run = job.kwargs["run"]
        job.connection.incr(f"test:d-executions:{run}")
        job.connection.expire(f"test:d-executions:{run}", 600)
    return {"b": b, "c": c, "sum": b + c}
