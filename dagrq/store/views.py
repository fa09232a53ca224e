"""What the web view reads in bulk: every DAG with its recent runs (the DAGs page), a DAG's
runs by node (the grid), and the workers with the queues they serve (the workers page).

Each read is a few pipelined round trips whatever the number of runs: the DAGs page reads
``1 + 2D + R`` commands for D DAGs and R runs shown (plus the schedules and pools it shows), the
grid ``1 + 3R`` for R runs; no command scans the keyspace.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from ..cluster import every_shard, for_run
from ..model.plan import Plan
from ..model.status import (
    SUMMARY_FIELDS,
    NodeStatus,
    RunSummary,
    parse_status,
    parse_summary,
)
from . import fleet, index, keys, metrics, runkeys
from .runs import RunStore

#: how many DAGs the DAGs page lists (newest submit first)
MAX_DAGS = 200
#: a worker's current job id: ``dagrq-<run id>-<node>``, maybe with ``-c<chunk>``/``-i<item>``
_JOB_ID = re.compile(r"^dagrq-([0-9a-f]{32})-(.+?)(?:-([ci])(\d+))?$")


@dataclass
class DagRow:
    """One DAG on the DAGs page."""

    dag: str
    #: its newest runs, newest first
    runs: list[RunSummary] = field(default_factory=list)
    #: the plan of its newest run (None when it cannot be read)
    plan: Plan | None = None


def dag_names(connection: Any) -> list[str]:
    """The DAGs that have had runs (up to :data:`MAX_DAGS`), newest submit first."""
    return [n.decode() for n in connection.zrevrange(keys.dags_key(), 0, MAX_DAGS - 1)]


def dags(connection: Any, per_dag: int = 25) -> list[DagRow]:
    """Every DAG that has runs, newest submit first, each with its newest ``per_dag`` runs
    and its newest run's plan (three pipelined round trips; on a cluster, per shard, merged)."""
    shards = every_shard(connection)
    if len(shards) == 1:
        return _dags_on(connection, per_dag)
    merged: dict[str, DagRow] = {}
    for row in (row for shard in shards for row in _dags_on(shard, per_dag)):
        seen = merged.setdefault(row.dag, DagRow(row.dag))
        if row.runs and (not seen.runs or row.runs[0].created_at > seen.runs[0].created_at):
            seen.plan = row.plan  # the newest run's
        seen.runs = sorted([*seen.runs, *row.runs], key=lambda r: -r.created_at)[:per_dag]
    newest = sorted(merged.values(), key=lambda r: -r.runs[0].created_at if r.runs else 0)
    return newest[:MAX_DAGS]


def _dags_on(connection: Any, per_dag: int) -> list[DagRow]:
    names = dag_names(connection)
    with connection.pipeline(transaction=False) as pipe:
        for dag in names:
            pipe.zrevrange(keys.runs_index_key(dag), 0, per_dag - 1)
        ids = [[i.decode() for i in got] for got in pipe.execute()]
    with connection.pipeline(transaction=False) as pipe:
        for run_ids in ids:
            for run_id in run_ids:
                pipe.hmget(runkeys.run_key(run_id), [*SUMMARY_FIELDS, "plan"])
        rows = iter(pipe.execute())
    out, plans = [], []
    for dag, run_ids in zip(names, ids, strict=True):
        row = DagRow(dag)
        for run_id in run_ids:
            raw = [v.decode() if v is not None else None for v in next(rows)]
            summary = parse_summary(run_id, raw[:-1])
            if summary is not None:
                row.runs.append(summary)
                if len(row.runs) == 1 and raw[-1]:
                    plans.append((row, runkeys.plan_key(dag, raw[-1])))
        out.append(row)
    _read_plans(connection, plans)
    return out


def _read_plans(connection: Any, wanted: list[tuple[DagRow, str]]) -> None:
    """Fill each row's plan from its key (one round trip)."""
    with connection.pipeline(transaction=False) as pipe:
        for _, key in wanted:
            pipe.get(key)
        for (row, _), raw in zip(wanted, pipe.execute(), strict=True):
            row.plan = Plan.from_json(raw) if raw else None


@dataclass
class Grid:
    """A DAG's runs by node: ``cells[run id][node]`` for each run, oldest run first."""

    runs: list[RunSummary]
    nodes: list[str]
    cells: dict[str, dict[str, NodeStatus]]


def grid(connection: Any, dag: str, limit: int = 25) -> Grid:
    """The newest ``limit`` runs of ``dag``, oldest first, with every node's status; rows in
    the newest run's plan order (nodes of older versions after them)."""
    runs = index.list_runs(connection, dag=dag, limit=limit)[::-1]
    raw: dict[str, tuple[dict[bytes, bytes], dict[bytes, bytes]]] = {}
    by_shard: dict[Any, list[str]] = {}
    for run in runs:  # one pipeline per shard of a cluster (one for one Redis)
        by_shard.setdefault(for_run(connection, run.id), []).append(run.id)
    for shard, ids in by_shard.items():
        with shard.pipeline(transaction=False) as pipe:
            for run_id in ids:
                pipe.hgetall(runkeys.run_key(run_id))
                pipe.hgetall(runkeys.nodes_key(run_id))
            got = pipe.execute()
        raw.update({run_id: (got[2 * i], got[2 * i + 1]) for i, run_id in enumerate(ids)})
    cells: dict[str, dict[str, NodeStatus]] = {}
    for run in runs:
        meta, fields = _decoded(raw[run.id][0]), _decoded(raw[run.id][1])
        if meta:
            cells[run.id] = parse_status(run.id, meta, fields, None).nodes
    nodes: dict[str, None] = {}
    for run in reversed(runs):  # the newest run's nodes first, in its plan's order
        nodes.update(dict.fromkeys(cells.get(run.id, {})))
    return Grid([r for r in runs if r.id in cells], list(nodes), cells)


def plan_of(connection: Any, run_id: str) -> Plan:
    """The plan run ``run_id`` is pinned to.

    Raises:
        RunNotFound: the run or its plan is gone.
    """
    return RunStore(for_run(connection, run_id), run_id).plan


def _decoded(raw: dict[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


@dataclass
class Fleet:
    """The workers page: each live dagrq worker process, each queue's depth."""

    workers: list[dict[str, Any]]
    queues: list[metrics.QueueDepth]
    versions: list[fleet.VersionInfo]


def workers(connection: Any) -> Fleet:
    """Live worker processes (host, pid, state, the run and node each runs now, the DAG
    versions each serves), every RQ queue's depth and oldest wait, and each DAG version's
    running runs."""
    versions = fleet.served_versions(connection)
    seen: dict[str, dict[str, Any]] = {}
    for version in versions:
        for w in version.workers:
            match = _JOB_ID.match(w.job or "")
            seen[w.name] = {
                **w.model_dump(),
                "run": match.group(1) if match else None,
                "node": match.group(2) if match else None,
            }
    readings = metrics.read(connection)
    return Fleet(sorted(seen.values(), key=lambda w: w["name"]), readings.queues, versions)
