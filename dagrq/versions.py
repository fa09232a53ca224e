"""DAG versions in a running system: which versions live workers serve (``dagrq workers``),
and moving a run to another version of its DAG (``dagrq upgrade``, ``Run.upgrade``).

A run is pinned to the version (plan hash) it was submitted with, and its jobs wait on that
version's queues (``<queue>@<version>``); a worker listens only on the queues of the versions
it has loaded. So during a rolling upgrade the old version's runs go on on the old workers
while the new workers take the new runs, and no worker ever runs a node with code of another
version. A run whose version no live worker serves any more waits (``dagrq status`` says so)
until it is canceled, or moved to another version by :func:`upgrade`: an explicit opt-in,
refused when the graph changed or when the old version still has live workers.
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterator
from typing import Any

from pydantic import BaseModel

from . import keys, rqjobs, scripts
from .errors import DAGChanged
from .plan import Plan
from .store import RunStore, active_runs


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
    and version (a version with runs but no worker is one whose runs wait)."""
    table: dict[tuple[str, str], VersionInfo] = {}
    for row in rqjobs.workers(connection):
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
    for (dag, version), n in _running_versions(connection).items():
        table.setdefault((dag, version), VersionInfo(dag=dag, version=version)).runs = n
    return [table[k] for k in sorted(table)]


def _running_versions(connection: Any) -> Counter[tuple[str, str]]:
    """``(DAG, version) -> runs still running``, in one round trip."""
    ids = active_runs(connection)
    with connection.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hmget(keys.run_key(run_id), "dag", "plan", "state")
        rows = pipe.execute()
    return Counter(
        (dag.decode(), plan.decode())
        for dag, plan, state in rows
        if dag and plan and state == b"running"
    )


#: ``rehome.lua`` calls per round trip
BATCH = 1000


def upgrade(store: RunStore, new: Plan) -> int:
    """Move a run to version ``new`` of its DAG: pin it to ``new`` and, while it runs, move
    every job of it (queued, claimed, scheduled for a retry, or leased by a worker that died)
    to the matching queue of ``new``; finished nodes' outputs are kept. An ended run is only
    re-pinned, so that a resume (``dagrq retry``) runs on ``new``. Returns how many jobs were
    waiting somewhere and moved.

    Raises:
        DAGChanged: ``new`` changed the graph (nodes, edges, maps, branches), the DAG or the
            serializer (:meth:`~dagrq.plan.Plan.differences`), or live workers still serve
            a running run's version (stop them first: they drain on SIGTERM).
        RunNotFound: the run does not exist.
    """
    old = store.plan
    problems = old.differences(new)
    if problems:
        raise DAGChanged(
            f"run {store.run_id} cannot go on as version {new.hash} of DAG {new.dag!r}: "
            + "; ".join(problems)
            + "; finish or cancel it, and submit a new run"
        )
    if old.hash == new.hash:
        return 0
    running = store.state() == "running"
    live = {q: n for q, n in rqjobs.listeners(store.connection, old.rq_queues).items() if n}
    if running and live:
        raise DAGChanged(
            f"version {old.hash} of DAG {old.dag!r} still has live workers (on "
            f"{', '.join(sorted(live))}): they go on running run {store.run_id}; stop them "
            "first (SIGTERM drains), or let them finish the run"
        )
    store.repin(new)
    if not running:
        return 0
    moved = 0
    batch = list(_moves(store, old, new))
    for start in range(0, len(batch), BATCH):
        with store.connection.pipeline(transaction=False) as pipe:
            scripts.rehome_calls(store.connection, pipe, batch[start : start + BATCH])
            moved += sum(1 for r in pipe.execute() if r in (b"queued", b"scheduled", b"started"))
    return moved


def _moves(
    store: RunStore, old: Plan, new: Plan
) -> Iterator[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """Every job the run has or may have, with its old and new homes."""
    run_id = store.run_id
    for name, spec in old.specs.items():
        before, after = old.rq_queue(spec.queue_name), new.rq_queue(new.specs[name].queue_name)
        old_keys, _ = rqjobs.home_keys(before)
        _, new_keys = rqjobs.home_keys(after)
        ids = [keys.job_id(run_id, name)]
        total = store.items_total(name) if spec.map_over else 0
        ids += [keys.chunk_job_id(run_id, name, c) for c in range(math.ceil(total / spec.chunk))]
        ids += [keys.item_job_id(run_id, name, i) for i in range(total)]
        for job_id in ids:
            yield job_id, after, old_keys, new_keys
