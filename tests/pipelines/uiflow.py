"""start -> gate -> end: `gate` runs until the test sets `test:gate:<run>` (or 60 s pass)."""

from __future__ import annotations

import time

from rq import get_current_job

from dagrq import DAG

dag = DAG("uiflow")


@dag.node
def start() -> int:
    print("starting")
    return 1


@dag.node
def gate(start: int) -> int:
    job = get_current_job()
    assert job is not None
    key = f"test:gate:{job.kwargs['run']}"
    deadline = time.monotonic() + 60
    while not job.connection.exists(key) and time.monotonic() < deadline:
        time.sleep(0.05)
    print("gate opened")
    return start + 1


@dag.node
def end(gate: int) -> int:
    return gate * 10
