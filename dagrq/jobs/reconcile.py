"""Every run ends: find what a crash, a lost write or a hand edit left stuck, and re-drive it.

Each dagrq worker runs :meth:`Reconciler.pass_` on a timer (one process at a time, under a
lock of its own that expires by itself: nothing waits on RQ's maintenance lock, which a dead
worker may hold for 15 minutes), and ``dagrq reconcile [RUN]`` runs it by hand. It looks at
every run that may still be running (:func:`dagrq.store.index.active_runs`) and, node by node,
holds dagrq's state against RQ's:

- a ``queued`` node whose job is in no queue (its claimer died before starting it, a failover
  lost the push): the job goes back on its queue (``redrive.lua``, fenced by the node state);
- a ``queued``/``running`` node whose execution's lease expired (its worker died): RQ's side is
  settled as RQ's clean-up would, and dagrq's by :func:`dagrq.jobs.lost.abandoned` (retried or
  failed by the node's ``retry=``);
- a node whose job ended without reporting: failed with RQ's error, or (its report lost, or
  Redis out of reach when it ran: a failover longer than the client's retries) re-driven up
  to :data:`MAX_REDRIVES` times;
- a mapped node whose item count stands still: the same checks on its chunk and item jobs;
- a job that is gone while its run runs (its write lost with a primary): made and enqueued
  again, up to :data:`MAX_REDRIVES` times;
- a ``pending`` node all of whose parents ended (a cascade cut short, a join context deleted by
  hand): the parents' outcomes are delivered again (idempotent, ``complete.lua``);
- a run whose counters disagree with its nodes: recounted, and ended if every node is final;
- a run that cannot be repaired (its node states or its plan gone, a state no step sets):
  ended ``failed`` with the damage named (``settle_run.lua``).

Every action goes through the same fenced scripts a worker uses, so a reconciler racing a
live worker changes nothing the worker does: at worst a body runs again (at least once).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import RunNotFound
from ..model.dag import DAG
from ..model.plan import NodeSpec
from ..model.status import FINAL_NODE_STATES, NODE_STATES, RunStatus, explain, parse_status
from ..store import flow, keys, lifecycle, rqjobs, scripts
from ..store.flow import holder_of
from ..store.index import active_runs
from ..store.outage import recorded_unreachable
from ..store.repairs import RunRepairs, claimed_since, rearm_timer
from .lost import settle_lost

log = logging.getLogger(__name__)

#: a job that ended without reporting is run again this many times, then its node fails
MAX_REDRIVES = 3
#: RQ job statuses of a job that ended
_ENDED = ("finished", "failed", "stopped", "canceled")


def forged_state(nodes: Iterable[str], fields: Mapping[str, str]) -> str | None:
    """What no step of dagrq leaves in a run's node states, named: a state no step sets, or a
    node ``succeeded`` without an attempt (set by hand, or by another program); None when the
    states are ones dagrq can have written.

    Examples:
        >>> states = {"a:state": "succeeded", "a:attempts": "1", "b:state": "queued"}
        >>> forged_state(["a", "b"], states)
        >>> forged_state(["a"], {"a:state": "succeeded"})
        'node a is succeeded but never ran (no attempt recorded)'
        >>> forged_state(["a"], {"a:state": "done"})
        "node a has state 'done', which no step sets"
    """
    for node in sorted(nodes):
        state = fields.get(f"{node}:state")
        if state not in NODE_STATES:
            return f"node {node} has state {state!r}, which no step sets"
        if state == "succeeded" and not int(fields.get(f"{node}:attempts") or 0):
            return f"node {node} is succeeded but never ran (no attempt recorded)"
    return None


@dataclass(frozen=True)
class Repair:
    """One thing the reconciler did: on ``node`` of ``run_id`` (``""`` for the run)."""

    run_id: str
    node: str
    what: str

    def __str__(self) -> str:
        return f"run {self.run_id}" + (f" node {self.node}" if self.node else "") + f": {self.what}"


class Reconciler:
    """Holds runs' dagrq state against RQ's and re-drives what is stuck.

    Args:
        connection: a ``redis.Redis``.
        grace_s: how long a job may sit queued, or started with no lease yet, and a mapped
            node's item count stand still, before it is looked at as stuck.
        claim_grace_s: how long a job may sit claimed but not started before its claimer is
            presumed dead and the job is put back (default ``grace_s``). A live worker starts
            a claimed job within milliseconds, but a CPU-starved one may take seconds, and a
            job put back while its claimer still runs it runs twice; workers wait a lease.
        lease_margin_s: how long past its expiry a lease is left to RQ's own clean-up first.
        served: DAGs this process serves by name (a missing plan of their version is stored
            again instead of the run being called damaged).
    """

    def __init__(
        self,
        connection: Any,
        *,
        grace_s: float = 10.0,
        claim_grace_s: float | None = None,
        lease_margin_s: float = 5.0,
        served: Mapping[str, DAG] | None = None,
    ) -> None:
        self.connection = connection
        self.grace_s, self.lease_margin_s = grace_s, lease_margin_s
        self.claim_grace_s = grace_s if claim_grace_s is None else claim_grace_s
        self.served = dict(served or {})
        self._leases: dict[str, list[tuple[str, float]]] = {}  # per pass: queue -> entries

    def pass_(self, run_ids: Iterable[str] | None = None) -> list[Repair]:
        """Look at ``run_ids`` (default: every run that may still be running) once; return
        what was repaired. A run that fails to be looked at is logged and skipped: one damaged
        run never stops the others being looked at."""
        repairs: list[Repair] = []
        self._leases = {}
        for run_id in list(run_ids) if run_ids is not None else active_runs(self.connection):
            try:
                repairs += self.run(run_id)
            except Exception:
                log.exception("reconciling run %s", run_id)
        if run_ids is None:
            repairs += self._flow()
        for repair in repairs:
            log.warning("reconciled: %s", repair)
        return repairs

    def _flow(self) -> list[Repair]:
        """Give back slots whose attempt is gone, and active-run places of runs that ended
        without saying so (:mod:`dagrq.store.flow`): a limit never leaks."""
        try:
            slots = flow.free_orphans(self.connection)
            places = flow.free_runs(self.connection)
        except Exception:
            log.exception("sweeping flow-control limits")
            return []
        out = [
            Repair(*holder_of(job_id), f"a slot of {key} held by a gone attempt was given back")
            for key, job_id in slots
        ]
        return out + [
            Repair(r, "", "its place among its DAG's active runs was given back") for r in places
        ]

    def run(self, run_id: str) -> list[Repair]:
        """Look at one run."""
        store = RunRepairs(self.connection, run_id)
        try:
            meta = store.meta()
        except RunNotFound:
            store.forget_active()
            return []
        if meta.get("state") == "queued":
            return []  # waiting for its DAG's max_active_runs: nothing of it runs yet
        if meta.get("state") != "running":
            store.forget_active()
            return []
        served = self.served.get(meta.get("dag", ""))
        damage = store.load_plan(meta, served.plan if served is not None else None)
        fields = store.node_fields() if damage is None else {}
        if damage is None and not fields:
            damage = "its node states are gone"
        if damage is None:
            damage = forged_state(store.plan.specs, fields)
        if damage is not None:
            scripts.settle_run(self.connection, run_id, damaged=damage)
            return [Repair(run_id, "", f"ended failed: run state damaged: {damage}")]
        repairs: list[Repair] = []
        status = parse_status(run_id, meta, fields, store.plan)
        for spec in store.plan.specs.values():
            repairs += self._node(store, spec, fields, status)
        states = [fields.get(f"{n}:state") for n in store.plan.specs]
        if all(s in FINAL_NODE_STATES for s in states):
            state, _, _ = scripts.settle_run(self.connection, run_id)
            if state != "running":
                repairs.append(Repair(run_id, "", f"every node had ended: run ended {state}"))
        return repairs

    # ------------------------------------------------------------------ nodes
    def _node(
        self, store: RunRepairs, spec: NodeSpec, fields: Mapping[str, str], status: RunStatus
    ) -> list[Repair]:
        state = fields.get(f"{spec.name}:state")
        if state == "pending":
            return self._pending(store, spec, status)
        if state == "waiting":
            return self._waiting(store, spec, fields)
        if state not in ("queued", "running"):
            return []
        if spec.map_over is not None and f"{spec.name}:expanded" in fields:
            return self._items(store, spec, fields)
        job_id = keys.job_id(store.run_id, spec.name)
        return self._job(store, spec, job_id, state, fields)

    def _waiting(
        self, store: RunRepairs, spec: NodeSpec, fields: Mapping[str, str]
    ) -> list[Repair]:
        """A parked node whose timer is overdue and missing (lost with a primary): set again."""
        parked, due = fields.get(f"{spec.name}:parked"), fields.get(f"{spec.name}:due")
        if not parked or not due or int(due) / 1000 > time.time() - self.grace_s:
            return []
        if not rearm_timer(self.connection, parked, int(due)):
            return []
        return [Repair(store.run_id, spec.name, "its timer was lost: set again")]

    def _pending(self, store: RunRepairs, spec: NodeSpec, status: RunStatus) -> list[Repair]:
        """A pending node whose parents all ended was never decided: deliver them again."""
        states = [status.nodes[p].state for p in spec.parents]
        if not spec.parents or any(s not in FINAL_NODE_STATES for s in states):
            return []
        if explain(status, spec.name).decision == "wait":
            return []
        for parent, state in zip(spec.parents, states, strict=True):
            store.deliver(parent, state)  # complete.lua delivers what was recorded
        return [Repair(store.run_id, spec.name, "its parents had ended: delivered them again")]

    def _job(
        self,
        store: RunRepairs,
        spec: NodeSpec,
        job_id: str,
        state: str,
        fields: Mapping[str, str],
        items: list[int] | None = None,
    ) -> list[Repair]:
        """Hold one job of a ``queued``/``running`` node (or, with ``items``, one item or chunk
        job of a mapped node) against RQ, and re-drive it when it is stuck."""
        conn, run_id, node = self.connection, store.run_id, spec.name
        info = rqjobs.job_fields(conn, [job_id])[job_id]
        status = info.get("status")
        queue_name = info.get("origin") or store.plan.rq_queue(spec.queue_name)
        now = time.time()
        if items is None and status in ("queued", "deferred"):
            queued_at = float(fields.get(f"{node}:queued") or 0)
            if queued_at > now - self.grace_s:
                return []  # just queued: a look at its queue would tell nothing new
        leases = self._leases_of(queue_name, job_id)
        if status == "started" and not leases:  # started after this pass read the registry?
            leases = self._leases_of(queue_name, job_id, fresh=True)
        if any(expiry >= now - self.lease_margin_s for _, expiry in leases):
            return []  # a worker holds it (or RQ's own clean-up still has its turn)
        redriven = int(fields.get(f"{node}:redriven", 0))
        unbegun = items is None and state == "queued" and redriven < MAX_REDRIVES
        if leases:
            return self._expired(store, spec, job_id, [m for m, _ in leases], unbegun=unbegun)
        if status is None:
            if redriven >= MAX_REDRIVES:
                return self._fail(store, spec, items, "its RQ job is gone (expired or lost)")
            return self._remake(store, spec, job_id, items)
        if status == "started":
            began = rqjobs.started_at(conn, job_id)
            if began is not None and began > now - self.grace_s:
                return []  # between RQ's start and its lease: give it time
            return self._expired(store, spec, job_id, [], unbegun=unbegun)
        if status == "scheduled" and rqjobs.scheduled(conn, queue_name, job_id):
            return []  # a retry waiting out its backoff
        if status in _ENDED:
            why = rqjobs.failure_text(rqjobs.fetch_job(job_id, conn)) if status == "failed" else ""
            # a node still queued never began its attempt: nothing of its body failed
            lost_report = status != "failed" or recorded_unreachable(why) or unbegun
            if not lost_report or redriven >= MAX_REDRIVES:
                why = why or f"status {status}"
                if items is None and state == "queued":
                    why = f"{redriven} re-drives, its attempt never began; {why}"
                return self._fail(store, spec, items, f"its job ended without reporting ({why})")
        wanted = ("queued", "running") if items is None else ("running",)
        done = scripts.redrive(conn, run_id, node, job_id, queue_name, wanted=wanted, release=False)
        if done == "claimed" and claimed_since(conn, job_id, 3600) <= now - self.claim_grace_s:
            done = scripts.redrive(
                conn, run_id, node, job_id, queue_name, wanted=wanted, release=True
            )  # claimed long ago and never started: its claimer died
        if done != "pushed":
            return []
        return [Repair(run_id, node, f"job {job_id} was in no queue: put back ({status})")]

    def _leases_of(
        self, queue_name: str, job_id: str, *, fresh: bool = False
    ) -> list[tuple[str, float]]:
        """The started-registry entries of ``job_id`` (each queue's registry read once per
        pass, unless ``fresh``; acting on an entry re-checks it atomically)."""
        entries = self._leases.get(queue_name)
        if entries is None or fresh:
            entries = self._leases[queue_name] = rqjobs.leases(self.connection, queue_name)
        prefix = f"{job_id}:"
        return [(m, expiry) for m, expiry in entries if m.startswith(prefix)]

    def _expired(
        self, store: RunRepairs, spec: NodeSpec, job_id: str, members: list[str], *, unbegun: bool
    ) -> list[Repair]:
        """The worker running ``job_id`` died: settle RQ's side and dagrq's. A job whose node
        never began its attempt (``unbegun``: the node is still ``queued``, as when Redis went
        away between RQ's start of the job and dagrq's) goes back on its queue, spending no
        retry (counted as a re-drive, so it fails the usual way after :data:`MAX_REDRIVES`)."""
        job = rqjobs.fetch_job(job_id, self.connection)
        reason = "worker lost: its lease expired (found by the reconciler)"
        if unbegun:
            reason = "worker lost before the node began (found by the reconciler)"
        cutoff = time.time() - self.lease_margin_s
        if not settle_lost(job, reason, members=members, cutoff=cutoff, interrupted=unbegun):
            return []  # renewed since, or another process settled it first
        if unbegun:
            store.count_redrive(spec.name)
        return [Repair(store.run_id, spec.name, f"job {job_id}: {reason}")]

    def _remake(
        self, store: RunRepairs, spec: NodeSpec, job_id: str, items: list[int] | None
    ) -> list[Repair]:
        """Make and enqueue again a job that is gone while its run runs (its write lost with a
        primary: a run outlives its jobs, so none expired): the node's own job, or (with
        ``items``) the chunk job of those items, whose recorded items are kept."""
        conn, run_id = self.connection, store.run_id
        if items is None:
            meta = store.meta()  # a limited node's job gets its gate again
            params, priority = json.loads(meta.get("params", "{}")), int(meta.get("priority", 0))
            extra = lifecycle.job_fields(store.plan, run_id, [spec], params, priority)
            rqjobs.enqueue_node_job(conn, store.plan, run_id, spec, extra.get(spec.name, {}))
        else:
            chunk: rqjobs.ItemJob = ("chunk", spec.chunk_of(items[0]))
            rqjobs.enqueue_item_jobs(conn, store.plan, run_id, spec, [chunk], spec.chunk_retry)
        store.count_redrive(spec.name)
        return [Repair(run_id, spec.name, f"job {job_id} was gone: made and enqueued again")]

    def _fail(
        self, store: RunRepairs, spec: NodeSpec, items: list[int] | None, why: str
    ) -> list[Repair]:
        """End the node (or, with ``items``, those items) failed with ``why``."""
        if items is None:
            store.deliver(spec.name, "failed", error=why)
        else:
            store.record_items(spec, errors=[(i, why) for i in items])
        return [Repair(store.run_id, spec.name, f"failed: {why}")]

    def _items(self, store: RunRepairs, spec: NodeSpec, fields: Mapping[str, str]) -> list[Repair]:
        """A mapped node whose items are out: when its count stands still, hold each job of
        its missing items against RQ."""
        done = fields.get(f"{spec.name}:items_done", "0")
        if store.unchanged_since(spec.name, done) > time.time() - self.grace_s:
            return []
        total = int(fields.get(f"{spec.name}:items_total", 0))
        missing = sorted(set(range(total)) - store.recorded_items(spec.name))
        alone = {i: keys.item_job_id(store.run_id, spec.name, i) for i in missing}
        exists = rqjobs.job_fields(self.connection, list(alone.values()))
        by_job: dict[str, list[int]] = {}
        for index in missing:  # an item retried on its own has a job of its own
            chunk = keys.chunk_job_id(store.run_id, spec.name, spec.chunk_of(index))
            job_id = alone[index] if exists[alone[index]] else chunk
            by_job.setdefault(job_id, []).append(index)
        repairs: list[Repair] = []
        for job_id, indices in by_job.items():
            repairs += self._job(store, spec, job_id, "running", fields, items=indices)
        return repairs
