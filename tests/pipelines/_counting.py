"""Helpers for test pipelines: count executions per run in Redis (run on the worker)."""

from __future__ import annotations

from rq import get_current_job


def count(name: str) -> int:
    """Increment and return ``test:<name>:<run>``."""
    job = get_current_job()
    assert job is not None
    key = f"test:{name}:{job.kwargs['run']}"
    n = int(job.connection.incr(key))
    job.connection.expire(key, 600)
    return n
