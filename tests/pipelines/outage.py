"""A diamond whose bodies nap 0.1-0.2 s and count how often they ran, for Redis outages in
the middle of a run (tests/reliability/test_outages.py); and a slow one-node run."""

from __future__ import annotations

import random
import time
import uuid

from redis.exceptions import ConnectionError
from rq import get_current_job

from dagrq import DAG

dag = DAG("t_outage")


def _nap(name: str) -> None:
    """Sleep as a body that does not use Redis would, then record this run of it under a
    token of its own (retried through an outage, idempotent: the record is the test's)."""
    time.sleep(random.uniform(0.1, 0.2))
    job = get_current_job()
    assert job is not None
    key, token = f"test:ran:{name}:{job.kwargs['run']}", uuid.uuid4().hex
    for _ in range(600):
        try:
            job.connection.sadd(key, token)
            job.connection.expire(key, 600)
            return
        except ConnectionError:
            time.sleep(0.1)


@dag.node
def a(seed: int) -> int:
    _nap("a")
    return seed


@dag.node
def b(a: int) -> int:
    _nap("b")
    return a + 1


@dag.node
def c(a: int) -> int:
    _nap("c")
    return a * 2


@dag.node
def d(b: int, c: int) -> int:
    _nap("d")
    return b + c


slow = DAG("t_outage_slow")


@slow.node
def start() -> int:
    return 1


@slow.node
def sleeper(start: int, seconds: float = 8.0) -> int:
    time.sleep(seconds)
    return start + 1


@slow.node
def end(sleeper: int) -> int:
    return sleeper * 10
