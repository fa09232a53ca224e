"""Prometheus metrics of a dagrq deployment, read from Redis on each scrape (docs/observability.md).

:class:`Collector` is a ``prometheus_client`` custom collector: every scrape reads Redis once
(:func:`dagrq.store.metrics.read`, three round trips, plus :func:`dagrq.pools.list`'s) and
yields ``dagrq_*`` families. Counters are the ones the Lua steps keep in Redis, so they
survive restarts of workers and of the exporter, and every exporter reports the same values.
Labels are bounded: DAG, node, state, queue, host, pool and schedule names, never run ids.

Served by ``dagrq metrics`` (:func:`serve`) and by ``dagrq ui`` at ``/metrics``
(:func:`render`).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from . import pools
from .model.observe import Histogram
from .store import metrics

__all__ = ["CONTENT_TYPE_LATEST", "Collector", "registry", "render", "serve"]


class Collector:
    """Yields every ``dagrq_*`` metric from one reading of Redis per scrape."""

    def __init__(self, connection: Any) -> None:
        self.connection = connection

    def describe(self) -> list[Metric]:
        """Nothing up front: the registry does not scrape Redis when the collector is
        registered."""
        return []

    def collect(self) -> Iterator[Metric]:
        """The metrics, read now (a Redis error fails the scrape: Prometheus's ``up`` is 0)."""
        read = metrics.read(self.connection)
        yield from _runs(read)
        yield from _nodes(read)
        yield from _queues(read)
        yield from _workers(read)
        yield from _limits(pools.list(self.connection))
        yield from _schedules(read)
        overall = read.counts.overall
        yield _one(
            "dagrq_reconciler_redrives",
            "Jobs the reconciler put back on their queue (lost between claim and start)",
            overall.get("redrives", 0),
        )
        yield _one(
            "dagrq_lease_expiries",
            "Attempts settled because their worker's lease expired (worker lost)",
            overall.get("lease_expiries", 0),
        )


def _one(name: str, documentation: str, value: int) -> CounterMetricFamily:
    return CounterMetricFamily(name, documentation, value=value)


def _runs(read: metrics.Readings) -> Iterator[Metric]:
    ended = CounterMetricFamily(
        "dagrq_runs", "Runs that ended, by DAG and end state", labels=["dag", "state"]
    )
    for (dag, state), n in sorted(read.counts.runs.items()):
        ended.add_metric([dag, state], n)
    yield ended
    active = GaugeMetricFamily(
        "dagrq_runs_active",
        "Runs not ended yet, by DAG and state (queued, running)",
        labels=["dag", "state"],
    )
    for (dag, state), n in sorted(read.active.items()):
        active.add_metric([dag, state], n)
    yield active


def _nodes(read: metrics.Readings) -> Iterator[Metric]:
    counts = read.counts
    started = CounterMetricFamily(
        "dagrq_node_attempts", "Node attempts started", labels=["dag", "node"]
    )
    for (dag, node), n in sorted(counts.started.items()):
        started.add_metric([dag, node], n)
    ended = CounterMetricFamily(
        "dagrq_nodes",
        "Nodes that ended, by end state (succeeded, failed, skipped, upstream_failed, cached)",
        labels=["dag", "node", "state"],
    )
    for (dag, node, state), n in sorted(counts.ended.items()):
        ended.add_metric([dag, node, state], n)
    retried = CounterMetricFamily(
        "dagrq_node_retries", "Failed node attempts that were retried", labels=["dag", "node"]
    )
    for (dag, node), n in sorted(counts.retried.items()):
        retried.add_metric([dag, node], n)
    yield from (started, ended, retried)
    yield _histogram(
        "dagrq_node_duration_seconds",
        "Node attempt durations, from start to its outcome (succeeded, failed or retried)",
        counts.durations,
    )
    yield _histogram(
        "dagrq_node_queue_wait_seconds",
        "Time a node's first attempt waited on its queue before it started",
        counts.waits,
    )


def _histogram(name: str, documentation: str, of: dict[tuple[str, str], Histogram]) -> Metric:
    family = HistogramMetricFamily(name, documentation, labels=["dag", "node"])
    for (dag, node), histogram in sorted(of.items()):
        family.add_metric([dag, node], histogram.cumulative(), histogram.total)
    return family


def _queues(read: metrics.Readings) -> Iterator[Metric]:
    depth = GaugeMetricFamily("dagrq_queue_jobs", "Jobs waiting on an RQ queue", labels=["queue"])
    oldest = GaugeMetricFamily(
        "dagrq_queue_oldest_age_seconds",
        "Age of the job at the head of an RQ queue (0 when empty)",
        labels=["queue"],
    )
    for queue in read.queues:
        depth.add_metric([queue.name], queue.jobs)
        oldest.add_metric([queue.name], queue.oldest_s or 0.0)
    yield from (depth, oldest)


def _workers(read: metrics.Readings) -> Iterator[Metric]:
    by: Counter[tuple[str, str]] = Counter()
    for row in read.workers:
        if not row.get("dagrq_serves"):
            continue  # an RQ worker that is not dagrq's
        by[row.get("hostname", "?"), "busy" if row.get("current_job") else "idle"] += 1
    family = GaugeMetricFamily(
        "dagrq_worker_processes",
        "Live dagrq worker processes per host, busy (running a job) or idle",
        labels=["host", "state"],
    )
    for host in sorted({h for h, _ in by}):
        for state in ("busy", "idle"):
            family.add_metric([host, state], by[host, state])
    yield family


def _limits(limits: list[pools.Limit]) -> Iterator[Metric]:
    size = GaugeMetricFamily(
        "dagrq_pool_slots",
        "Slots of a pool (starts per period for a rate limit)",
        labels=["kind", "pool"],
    )
    used = GaugeMetricFamily(
        "dagrq_pool_slots_used",
        "Slots held now (starts in the window for a rate limit)",
        labels=["kind", "pool"],
    )
    waiting = GaugeMetricFamily(
        "dagrq_pool_waiting", "Node attempts waiting for room in a limit", labels=["kind", "pool"]
    )
    for limit in limits:
        if limit.kind == "node":
            continue  # per-node (and per-key) limits: unbounded labels; see dagrq pools
        size.add_metric([limit.kind, limit.name], limit.size)
        used.add_metric([limit.kind, limit.name], limit.used)
        waiting.add_metric([limit.kind, limit.name], len(limit.waiting))
    yield from (size, used, waiting)


def _schedules(read: metrics.Readings) -> Iterator[Metric]:
    late = GaugeMetricFamily(
        "dagrq_schedule_lateness_seconds",
        "How late the leader started the last tick's run of a schedule",
        labels=["schedule"],
    )
    passed = CounterMetricFamily(
        "dagrq_schedule_ticks_passed",
        "Ticks of a schedule that got no run: missed (catchup off) or skipped (overlap)",
        labels=["schedule", "reason"],
    )
    for name, state in sorted(read.schedules.items()):
        if state.late_ms is not None:
            late.add_metric([name], state.late_ms / 1000)
        passed.add_metric([name, "missed"], state.missed)
        passed.add_metric([name, "skipped"], state.skipped)
    yield from (late, passed)


def registry(connection: Any) -> CollectorRegistry:
    """A registry holding only dagrq's collector on ``connection`` (no process metrics: an
    exporter's own are not the deployment's)."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(Collector(connection))
    return reg


def render(reg: CollectorRegistry) -> bytes:
    """One scrape of ``reg`` in Prometheus's text format (:data:`CONTENT_TYPE_LATEST`)."""
    return generate_latest(reg)


def serve(connection: Any, host: str, port: int) -> threading.Thread:
    """Serve ``/metrics`` (any path, as ``prometheus_client`` does) on ``host:port`` from a
    daemon thread; returns it. Raises OSError when the address is taken."""
    _, thread = start_http_server(port, addr=host, registry=registry(connection))
    return thread
