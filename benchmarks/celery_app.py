"""Celery tasks for the comparison (``celery -A benchmarks.celery_app worker``)."""

from __future__ import annotations

import json
import os
import time

import redis
from celery import Celery

URL = os.environ.get("BENCH_URL", "redis://127.0.0.1:6379/0")
app = Celery("bench", broker=URL, backend=URL)
app.conf.update(
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    result_expires=3600,
    worker_prefetch_multiplier=4,
)
_redis = redis.Redis.from_url(URL)


@app.task
def noop(*args: object) -> None:
    return None


@app.task
def mark(results: object, token: str) -> None:
    _redis.set(f"bench:done:{token}", repr(time.time()))


@app.task
def big(mb: float) -> str:
    """A chord header returning ``mb`` MB of text (the objects benchmark)."""
    return "x" * int(mb * 10**6)


@app.task
def measured(results: list[str], token: str) -> None:
    """A chord body: record the length of what it got, and when."""
    _redis.set(f"bench:done:{token}", json.dumps([time.time(), len(results[0])]))


def release_results() -> None:
    """Drop the AsyncResults Celery keeps for every submitted canvas (it would unsubscribe
    them in ``__del__`` at interpreter exit, after the benchmark's Redis is gone)."""
    for waiting in app.backend._pending_results:
        for waiters in list(waiting.values()):
            for result in list(waiters.values()):
                app.backend.remove_pending_result(result)
