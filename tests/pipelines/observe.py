"""DAGs with alert hooks for tests/test_observe.py: a run that retries one node and fails
another, whose on_failure callback raises; one that succeeds. Hooks record what they heard
in Redis (``test:obs:*``); the webhook is ``$T_OBS_WEBHOOK``."""

from __future__ import annotations

import json
import logging
import os
import time

import redis
from rq import get_current_job

from dagrq import DAG, HookEvent, Retry

log = logging.getLogger("t_obs")


def _record(event: HookEvent) -> None:
    conn = redis.Redis.from_url(os.environ["DAGRQ_URL"])
    conn.rpush(f"test:obs:{event.run_id}", json.dumps([event.kind, event.node, event.attempt]))


def failing_hook(event: HookEvent) -> None:
    _record(event)
    raise RuntimeError("the pager is down")


WEBHOOK = os.environ.get("T_OBS_WEBHOOK") or "http://127.0.0.1:9/unset"

dag = DAG("t_obs", on_failure=failing_hook, on_retry=_record, on_success=_record, webhook=WEBHOOK)


@dag.node
def a(hold: float = 0.3) -> int:
    time.sleep(hold)
    log.warning("a is done")
    return 1


@dag.node
def b(hold: float = 0.3) -> int:
    time.sleep(hold)
    return 2


@dag.node(retry=Retry(max=1))
def flaky(a: int) -> int:
    job = get_current_job()
    assert job is not None
    if job.connection.incr(f"test:obs:flaky:{job.kwargs['run']}") == 1:
        raise ConnectionError("first try fails")
    return a + 1


@dag.node
def broken(b: int) -> int:
    raise ValueError(f"broken on {b}")


@dag.node
def joined(flaky: int, b: int) -> int:
    return flaky + b


ok = DAG("t_obs_ok", on_success=_record, webhook=WEBHOOK)


@ok.node
def one() -> int:
    return 1
