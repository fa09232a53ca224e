"""A many-to-many DAG for kill storms: 3 sources -> 4 middle nodes -> 2 joins, a map over a
list, and a sink joining all. Every body sleeps a little, counts its executions in Redis and
returns a value that depends only on its inputs, so results can be checked against
run_local whatever was killed and run again."""

from __future__ import annotations

import random
import time

from rq import get_current_job

from dagrq import DAG, Retry

dag = DAG("t_storm")
AGAIN = Retry(max=20)


def work(name: str, value: int) -> int:
    job = get_current_job()
    if job is not None:  # on a worker: count executions, take some time
        key = f"test:exec:{job.kwargs['run']}:{name}"
        job.connection.incr(key)
        job.connection.expire(key, 3600)
        time.sleep(random.uniform(0.0, 0.03))
    return value % 1_000_003


@dag.node(retry=AGAIN)
def s1(seed: int) -> int:
    return work("s1", seed * 3 + 1)


@dag.node(retry=AGAIN)
def s2(seed: int) -> int:
    return work("s2", seed * 5 + 2)


@dag.node(retry=AGAIN)
def s3(seed: int) -> int:
    return work("s3", seed * 7 + 3)


@dag.node(retry=AGAIN)
def m1(s1: int, s2: int) -> int:
    return work("m1", s1 * 11 + s2)


@dag.node(retry=AGAIN)
def m2(s2: int, s3: int) -> int:
    return work("m2", s2 * 13 + s3)


@dag.node(retry=AGAIN)
def m3(s1: int, s3: int) -> int:
    return work("m3", s1 * 17 + s3)


@dag.node(retry=AGAIN)
def m4(s1: int, s2: int, s3: int) -> int:
    return work("m4", s1 + s2 * 19 + s3)


@dag.node(retry=AGAIN)
def j1(m1: int, m2: int, m3: int) -> int:
    return work("j1", m1 * 23 + m2 * 29 + m3)


@dag.node(retry=AGAIN)
def j2(m2: int, m3: int, m4: int) -> int:
    return work("j2", m2 + m3 * 31 + m4 * 37)


@dag.node(retry=AGAIN)
def numbers(seed: int, items: int = 40) -> list[int]:
    work("numbers", 0)
    return [seed + i for i in range(items)]


@dag.map("numbers", chunk=5, retry=AGAIN)
def square(numbers: int) -> int:
    return work("square", numbers * numbers)


@dag.node(retry=AGAIN)
def total(j1: int, j2: int, square: list[int]) -> int:
    return work("total", j1 + j2 * 41 + sum(square))
