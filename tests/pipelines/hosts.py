"""Six one-second nodes and a join: each records on which "host" it ran ($TEST_HOST), so a
test can see nodes spread over workers on two hosts, and re-run on one when the other is cut
off."""

from __future__ import annotations

import os
import time

from rq import get_current_job

from dagrq import DAG, Retry

dag = DAG("t_hosts")


def ran(name: str, value: int) -> int:
    job = get_current_job()
    assert job is not None
    key = f"test:ran:{job.kwargs['run']}:{name}"
    job.connection.rpush(key, os.environ.get("TEST_HOST", "?"))
    job.connection.expire(key, 600)
    time.sleep(1.5)
    return value


@dag.node(retry=Retry(max=3))
def w1(seed: int) -> int:
    return ran("w1", seed + 1)


@dag.node(retry=Retry(max=3))
def w2(seed: int) -> int:
    return ran("w2", seed + 2)


@dag.node(retry=Retry(max=3))
def w3(seed: int) -> int:
    return ran("w3", seed + 3)


@dag.node(retry=Retry(max=3))
def w4(seed: int) -> int:
    return ran("w4", seed + 4)


@dag.node(retry=Retry(max=3))
def w5(seed: int) -> int:
    return ran("w5", seed + 5)


@dag.node(retry=Retry(max=3))
def w6(seed: int) -> int:
    return ran("w6", seed + 6)


@dag.node(retry=Retry(max=3))
def join(w1: int, w2: int, w3: int, w4: int, w5: int, w6: int) -> int:
    return ran("join", w1 + w2 + w3 + w4 + w5 + w6)
