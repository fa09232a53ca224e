"""first -> slow, twin -> after: cancel while `slow` runs and `twin` is queued (the
children of `first` fire in name order, so one worker takes `slow` first)."""

from __future__ import annotations

import time

from rq import get_current_job

from dagrq import DAG

dag = DAG("t_cancel")


def _mark(what: str) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.set(f"test:{what}:{job.kwargs['run']}", 1, ex=600)


@dag.node
def first() -> int:
    return 1


@dag.node
def slow(first: int, pause_s: float = 3.0) -> int:
    _mark("slow-started")
    time.sleep(pause_s)
    _mark("slow-finished")
    return first


@dag.node
def twin(first: int) -> int:
    _mark("twin-ran")
    return first


@dag.node
def after(slow: int, twin: int) -> int:
    _mark("after-ran")
    return slow + twin
