"""Everything a metrics scrape reads from Redis, in three round trips (docs/observability.md).

Round trip 1 (one pipeline): the counters hash (kept by the Lua steps, see
:mod:`dagrq.model.observe`), the active runs, the RQ queues, the schedules. Round trip 2:
each active run's DAG and state, each queue's length, priority set and head, each schedule's
state. Round trip 3: the enqueue time of each non-empty queue's head job. Then the live
workers (:func:`dagrq.store.rqjobs.workers`: 2 round trips, ``1 + W`` commands). So a scrape
issues ``5 + A + 3Q + Q' + S + W`` commands for A active runs, Q queues (Q' not empty), S
schedules and W worker processes, and no command scans the keyspace. Pools are read by
:func:`dagrq.pools.list` (its own round trips).
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ..cluster import every_shard
from ..model.observe import Counts, parse_counts
from . import keys, rqjobs, runkeys
from .schedules import ScheduleState, state_of


@dataclass
class QueueDepth:
    """One RQ queue: jobs waiting (its list and priority set) and the oldest one's age."""

    name: str
    jobs: int
    oldest_s: float | None


@dataclass
class Readings:
    """One scrape's reading of Redis."""

    counts: Counts
    #: (dag, state) -> active runs (queued or running)
    active: Counter[tuple[str, str]] = field(default_factory=Counter)
    queues: list[QueueDepth] = field(default_factory=list)
    #: live worker processes' registrations (:func:`dagrq.store.rqjobs.workers`' rows)
    workers: list[dict[str, str]] = field(default_factory=list)
    #: schedule (``<dag>:<name>``) -> its state
    schedules: dict[str, ScheduleState] = field(default_factory=dict)


def read(connection: Any) -> Readings:
    """Read what a scrape reports (see the module's docstring for its cost); on a cluster,
    every shard's, summed (its counters, active runs, queue depths, workers; schedules live
    on the first shard)."""
    read = [_read(shard) for shard in every_shard(connection)]
    raws, parts = [r for r, _ in read], [p for _, p in read]
    if len(parts) == 1:
        return parts[0]
    total: Counter[str] = Counter()
    for raw in raws:
        total.update({k: float(v) for k, v in raw.items()})
    merged = parts[0]
    merged.counts = parse_counts({k: f"{v:g}" if v % 1 else str(int(v)) for k, v in total.items()})
    depths: dict[str, QueueDepth] = {}
    for part in parts[1:]:
        merged.active.update(part.active)
        merged.workers += part.workers
    for depth in (q for part in parts for q in part.queues):
        seen = depths.setdefault(depth.name, QueueDepth(depth.name, 0, None))
        seen.jobs += depth.jobs
        ages = [a for a in (seen.oldest_s, depth.oldest_s) if a is not None]
        seen.oldest_s = max(ages) if ages else None
    merged.queues = [depths[name] for name in sorted(depths)]
    return merged


def _read(connection: Any) -> tuple[dict[str, str], Readings]:
    """One Redis's (or shard's) raw counters and readings."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hgetall(keys.METRICS_KEY)
        pipe.zrange(keys.active_runs_key(), 0, -1)
        pipe.smembers(keys.RQ_QUEUES_SET)
        pipe.hkeys(keys.SCHEDULES_KEY)
        raw, active, queue_keys, schedules = pipe.execute()
    runs = [r.decode() for r in active]
    queues = sorted(q.decode().removeprefix(keys.RQ_QUEUE_PREFIX) for q in queue_keys)
    scheduled = sorted(s.decode() for s in schedules)
    with connection.pipeline(transaction=False) as pipe:
        for run_id in runs:
            pipe.hmget(runkeys.run_key(run_id), "dag", "state")
        for queue in queues:
            key = keys.RQ_QUEUE_PREFIX + queue
            pipe.llen(key)
            pipe.zcard(key + ":prio")
            pipe.lindex(key, 0)
        for schedule in scheduled:
            pipe.hgetall(keys.schedule_key(schedule))
        rows = pipe.execute()
    counters = {k.decode(): v.decode() for k, v in raw.items()}
    readings = Readings(
        counts=parse_counts(counters),
        schedules={s: state_of(rows[-len(scheduled) + i]) for i, s in enumerate(scheduled)},
    )
    for dag, state in rows[: len(runs)]:
        if dag and state in (b"queued", b"running"):  # ended ones wait for the reconciler's prune
            readings.active[dag.decode(), state.decode()] += 1
    at = len(runs)
    heads = [rows[at + 3 * i : at + 3 * i + 3] for i in range(len(queues))]
    readings.workers = rqjobs.workers(connection)
    readings.queues = _depths(connection, queues, heads)
    return counters, readings


def _depths(connection: Any, queues: list[str], heads: list[list[Any]]) -> list[QueueDepth]:
    """Each queue's depth and its head job's age (one round trip for the heads' enqueue
    times)."""
    waiting = [(q, h[2].decode()) for q, h in zip(queues, heads, strict=True) if h[2]]
    with connection.pipeline(transaction=False) as pipe:
        for _, job_id in waiting:
            pipe.hget(keys.RQ_JOB_PREFIX + job_id, "enqueued_at")
        enqueued = dict(zip((q for q, _ in waiting), pipe.execute(), strict=True))
    now = time.time()
    out = []
    for queue, (length, prio, _) in zip(queues, heads, strict=True):
        at = _unix(enqueued.get(queue))
        out.append(QueueDepth(queue, int(length) + int(prio), now - at if at else None))
    return out


def _unix(raw: bytes | None) -> float | None:
    """An RQ job hash's time (``2026-12-02T15:04:05.123456Z``) as unix seconds."""
    if not raw:
        return None
    when = datetime.fromisoformat(raw.decode())
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()
