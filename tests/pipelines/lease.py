"""Lost workers: a node's first attempt publishes its process id and then hangs, so the test
can SIGKILL that process mid-node; later attempts finish at once."""

from __future__ import annotations

import os
import time

from _counting import count as _count
from rq import get_current_job

from dagrq import DAG, Retry

retried = DAG("t_lease_retried")
doomed = DAG("t_lease_doomed")


def _hang_first(name: str) -> int:
    attempt = _count(name)
    if attempt == 1:
        job = get_current_job()
        assert job is not None
        job.connection.set(f"test:pid:{name}:{job.kwargs['run']}", os.getpid(), ex=600)
        time.sleep(120)  # killed here
    return attempt


@retried.node
def a() -> int:
    return 1


@retried.node(retry=Retry(max=1))
def slow(a: int) -> int:
    return _hang_first("slow")


@retried.node
def other(a: int) -> int:
    return 2


@retried.node
def join(slow: int, other: int) -> dict[str, int]:
    _count("join")
    return {"slow_attempt": slow, "other": other}


@doomed.node
def start() -> int:
    return 1


@doomed.node
def lost(start: int) -> int:
    return _hang_first("lost")


@doomed.node
def after(lost: int) -> int:
    _count("after")
    return lost


mapped = DAG("t_lease_mapped")


@mapped.node
def numbers() -> list[int]:
    return list(range(10))


@mapped.map("numbers", chunk=5, retry=Retry(max=1))
def square(numbers: int) -> int:
    if numbers == 7:
        _hang_first("seven")
    return numbers * numbers


@mapped.node
def total(square: list[int]) -> int:
    _count("total")
    return sum(square)
