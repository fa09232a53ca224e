"""Retries: only the final outcome of a node reaches its children."""

from __future__ import annotations

from _counting import count as _count

from dagrq import DAG, Retry

dag = DAG("t_retry")


@dag.node(retry=Retry(max=2, backoff=[1]))
def flaky() -> int:
    attempt = _count("flaky")
    if attempt < 3:
        raise ConnectionError(f"attempt {attempt} failed")
    return attempt


@dag.node
def child(flaky: int) -> int:
    _count("child")
    return flaky * 10


@dag.node(retry=1)
def always_bad() -> int:
    raise ValueError(f"attempt {_count('always_bad')} failed")


@dag.node
def after_bad(always_bad: int) -> int:
    _count("after_bad")
    return always_bad
