"""Scheduled DAGs: ``every2s`` fires every 2 seconds (a seconds field), its node records its
logical time; ``slow`` ticks every second with a node that takes 2.5 s (overlap policies);
``hourly`` is for backfills."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta

import redis

from dagrq import DAG

every2s = DAG("t_every2s")
every2s.schedule("*/2 * * * * *", name="fast", overlap="allow", params={"label": "tick"})


def _conn() -> redis.Redis:
    from rq import get_current_job

    job = get_current_job()
    return job.connection if job is not None else redis.Redis.from_url(os.environ["DAGRQ_URL"])


@every2s.node
def stamp(logical_time: datetime, label: str = "") -> str:
    _conn().rpush("test:sched:every2s", logical_time.isoformat())
    return f"{label}@{logical_time.isoformat()}"


slow = DAG("t_slow")
for policy in ("skip", "buffer_one", "allow"):
    slow.schedule("* * * * * *", name=policy, overlap=policy, params={"policy": policy})


@slow.node
def linger(policy: str, logical_time: datetime) -> str:
    conn = _conn()
    conn.rpush(f"test:sched:slow:{policy}", f"start {time.time()} {logical_time.isoformat()}")
    time.sleep(2.5)
    conn.rpush(f"test:sched:slow:{policy}", f"end {time.time()} {logical_time.isoformat()}")
    return policy


hourly = DAG("t_hourly")
hourly.schedule("0 * * * *", name="hourly", timezone="Europe/Paris")


@hourly.node
def extract(interval_start: datetime, interval_end: datetime) -> str:
    return f"{interval_start.isoformat()}/{interval_end.isoformat()}"


caught = DAG("t_caught")
caught.schedule(every=timedelta(hours=1), name="hourly", catchup=timedelta(hours=3))


@caught.node
def mark(logical_time: datetime) -> str:
    return logical_time.isoformat()


wrong = DAG("t_wrong")  # a schedule giving a parameter no node takes: refused at validation
wrong.schedule("0 * * * *", name="wrong", params={"colour": "red"})


@wrong.node
def plain(logical_time: datetime) -> str:
    return logical_time.isoformat()
