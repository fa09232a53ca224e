"""start -> tick -> after: `tick` counts in Redis every 50 ms while it runs, so a test can
see whether a body still runs after its run was canceled."""

from __future__ import annotations

import time

from rq import get_current_job

from dagrq import DAG

dag = DAG("t_tick")


@dag.node
def start() -> int:
    return 1


@dag.node
def tick(start: int, ticks: int = 200) -> int:
    job = get_current_job()
    assert job is not None
    key = f"test:tick:{job.kwargs['run']}"
    for _ in range(ticks):
        job.connection.incr(key)
        job.connection.expire(key, 600)
        time.sleep(0.05)
    job.connection.set(f"test:tick-done:{job.kwargs['run']}", 1, ex=600)
    return ticks


@dag.node
def after(tick: int) -> int:
    return tick
