"""Job bodies shared by the benchmark systems. Each join body marks its end in Redis, so every
system's end is observed by the same mechanism: the driver polls ``bench:done:<token>``."""

from __future__ import annotations

import os
import time

import redis
from rq import get_current_job


def _conn() -> redis.Redis:
    job = get_current_job()
    if job is not None:
        return job.connection
    return redis.Redis.from_url(os.environ["BENCH_URL"])


def noop(*args: object, **kwargs: object) -> None:
    """A no-op job (RQ)."""


def count(token: str) -> None:
    """A no-op that counts itself (plain RQ jobs, no join)."""
    _conn().incr(f"bench:count:{token}")


def mark(token: str, *args: object) -> None:
    """A join body: record when it ran."""
    _conn().set(f"bench:done:{token}", repr(time.time()))


def hold_mark(token: str, hold: float) -> None:
    """A body that works ``hold`` seconds, then records when it ended (the flow cells)."""
    if hold:
        time.sleep(hold)
    mark(token)
