"""Cached nodes whose bodies count their runs in Redis: a map over `n` items (each item's
result kept on its own), and a node whose cache entry a test damages."""

from __future__ import annotations

from rq import get_current_job

from dagrq import DAG

dag = DAG("t_cached", cache=True)


def _count(name: str, by: int = 1) -> None:
    job = get_current_job()
    assert job is not None
    job.connection.incrby(f"test:ran:{name}", by)


@dag.node
def numbers(n: int = 1000) -> list[int]:
    _count("numbers")
    return list(range(n))


@dag.map("numbers", chunk=50)
def square(numbers: int) -> int:
    _count("square")
    return numbers * numbers


@dag.node
def total(square: list[int]) -> int:
    _count("total")
    return sum(square)
