"""Which DAG versions live workers serve, and how many running runs each has (``dagrq
workers``); moving a run between versions is :func:`dagrq.store.lifecycle.upgrade`'s.

A run is pinned to the version (plan hash) it was submitted with, and its jobs wait on that
version's queues (``<queue>@<version>``); a worker listens only on the queues of the versions
it has loaded. So during a rolling upgrade the old version's runs go on on the old workers
while the new workers take the new runs, and no worker ever runs a node with code of another
version. A run whose version no live worker serves any more waits (``dagrq status`` says so)
until it is canceled, or moved to another version by
:func:`~dagrq.store.lifecycle.upgrade`: an explicit opt-in,
refused when the graph changed or when the old version still has live workers.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from ..cluster import every_shard
from . import index, keys, rqjobs


class WorkerInfo(BaseModel):
    """One live RQ worker process that serves dagrq DAGs."""

    name: str
    host: str | None = None
    pid: int | None = None
    state: str | None = None
    job: str | None = None
    #: ``{DAG name: version}``
    serves: dict[str, str] = {}


class VersionInfo(BaseModel):
    """One version of one DAG: the live workers that serve it and the runs pinned to it."""

    dag: str
    version: str
    workers: list[WorkerInfo] = []
    #: runs of this version still running
    runs: int = 0

    @property
    def busy(self) -> int:
        """Workers running a job now."""
        return sum(1 for w in self.workers if w.job)


def served_versions(connection: Any) -> list[VersionInfo]:
    """Every DAG version that live workers serve or running runs are pinned to, sorted by DAG
    and version (a version with runs but no worker is one whose runs wait); on a cluster,
    those of every shard."""
    table: dict[tuple[str, str], VersionInfo] = {}
    shards = every_shard(connection)
    for row in (row for shard in shards for row in rqjobs.workers(shard)):
        serves = json.loads(row.get(keys.SERVES_FIELD) or "{}")
        if not serves:
            continue  # not a dagrq worker
        info = WorkerInfo(
            name=row["name"],
            host=row.get("hostname"),
            pid=int(row["pid"]) if row.get("pid") else None,
            state=row.get("state"),
            job=row.get("current_job") or None,
            serves=serves,
        )
        for dag, version in serves.items():
            table.setdefault((dag, version), VersionInfo(dag=dag, version=version))
            table[(dag, version)].workers.append(info)
    for shard in shards:
        for (dag, version), n in index.running_versions(shard).items():
            table.setdefault((dag, version), VersionInfo(dag=dag, version=version)).runs += n
    return [table[k] for k in sorted(table)]
