"""A map whose items wait for a gate the test opens (``test:gate:<run>``), so a test can hold
its chunk jobs as it likes while one runs."""

from __future__ import annotations

import time

from rq import get_current_job

from dagrq import DAG

dag = DAG("t_gated")


@dag.node
def numbers(n: int = 4) -> list[int]:
    return list(range(n))


@dag.map("numbers", chunk=2)
def double(numbers: int) -> int:
    job = get_current_job()
    if job is not None:  # on a worker: wait for the test to open the gate
        gate = f"test:gate:{job.kwargs['run']}"
        deadline = time.monotonic() + 120
        while not job.connection.exists(gate) and time.monotonic() < deadline:
            time.sleep(0.05)
    return numbers * 2


@dag.node
def total(double: list[int]) -> int:
    return sum(double)
