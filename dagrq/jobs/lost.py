"""Lost workers: the failure callback :func:`on_failure`, and settling a job whose worker died
(:func:`abandoned`). The worker classes that hold leases are in :mod:`dagrq.workers.leased`.

Its wire name, ``dagrq.lease.on_failure`` (:data:`dagrq.store.keys.ON_FAILURE`), is stored in
every RQ job hash: the thin module :mod:`dagrq.lease` keeps it resolving.

A worker holds a lease on the job it runs: RQ's started-job
registry entry, which the worker renews every third of the lease while the node runs. Two
ways a node's worker can be lost, both settled by :func:`abandoned`:

- the work horse of a forking worker dies (SIGKILL, out of memory): the worker itself sees
  it at once;
- the whole worker dies (SIGKILL, the machine): its lease expires, and the reconciler
  (:mod:`dagrq.jobs.reconcile`) settles it, or RQ's own registry clean-up calls the job's failure
  callback, :func:`on_failure`, with RQ's ``AbandonedJobError``, whichever comes first.

A third, in a pooled worker (:mod:`dagrq.workers.pool`): the process running a node dies (or is
killed past its timeout, or at the end of a shutdown's drain time); its supervisor sees it at
once and calls :func:`settle_lost`, as the reconciler does when a lease expires.

Settling follows :func:`dagrq.jobs.attempt.settle_failure`, as a failed attempt does: with
retries left, RQ requeues the job and the node shows ``queued`` again; without, the node
fails (``worker lost ...``) and its children get that outcome, so joins still fire exactly
once and the run ends. A killed node's body may run again (at least once); if the lost
worker was only slow, its late report is refused (``complete.lua`` compares attempts).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

from ..store import keys, rqjobs, scripts
from ..store.runs import RunStore
from .attempt import settle_failure
from .fanout import enqueue_alone

log = logging.getLogger(__name__)


def on_failure(job: Any, connection: Any, exc_type: Any, exc: Any, traceback: Any) -> None:
    """RQ failure callback of every dagrq job: settles a job RQ found abandoned.

    A node's own exceptions are recorded by the node's job before RQ sees them, so only
    ``AbandonedJobError`` (the job's lease expired with its worker gone) is acted on.
    """
    if exc_type is rqjobs.AbandonedJobError:
        abandoned(job, "worker lost: its lease expired while the node was running")


def abandoned(job: Any, reason: str) -> bool:
    """Settle ``job``, whose worker died while running it, by
    :func:`~dagrq.jobs.attempt.settle_failure`: requeue the node when RQ will retry the job,
    else fail it (or, for a chunk of a mapped node, its unrecorded items) with ``reason``.
    Idempotent; a node already final is left alone.

    A node still ``queued`` never began its attempt (its worker was lost between RQ's start
    of the job and dagrq's): it is left to the reconciler, which puts the job back without
    spending a retry.

    Returns:
        False when nothing of the job was wanted any more (its run ended, its node's outcome
        or its items were recorded before the worker was lost, or its attempt never began),
        else True.
    """
    ref = rqjobs.ref_of(job)
    store = RunStore(job.connection, ref.run)
    if store.state() != "running":
        return False
    spec = store.plan.specs[ref.node]
    if ref.own:
        if store.lost_node_settled(ref.node):
            return False  # outcome recorded (or a map's items all enqueued) before the loss
        if store.node_state(ref.node) == "queued":
            return False  # its attempt never began: the reconciler puts the job back
        log.warning("run %s: node %s (%s): %s", store.run_id, ref.node, job.id, reason)
        store.log_error(ref.node, store.attempts(ref.node), reason)
        if settle_failure(retries_left=job.retries_left) == "retry":
            store.requeue(ref.node, reason)  # RQ runs the job again
        else:
            store.deliver(ref.node, "failed", error=reason)
        return True
    indices = [
        i
        for i in ref.indices(spec, store.items_total(ref.node))
        if i not in store.recorded_items(ref.node)
    ]
    if not indices:
        return False  # every item of the job was recorded before the loss
    log.warning("run %s: node %s (%s): %s", store.run_id, ref.node, job.id, reason)
    settlement = settle_failure(
        retries_left=job.retries_left,
        items=1 if ref.single(spec) else spec.chunk,
        node_retries=spec.retries,
    )
    if settlement == "retry":
        return True  # RQ runs this item's job again
    if settlement == "retry_alone":
        enqueue_alone(store, spec, indices)
        return True
    store.record_items(spec, errors=[(i, reason) for i in indices])
    return True


def settle_lost(
    job: Any,
    reason: str,
    *,
    members: Sequence[str] | None = None,
    cutoff: float = math.inf,
    interrupted: bool = False,
) -> bool:
    """Settle ``job``, whose worker is gone, on both sides: take its lease (the started-registry
    ``members``, read here when None) if it expired before ``cutoff`` (default: whatever its
    expiry, for a process known dead), then settle dagrq's side (:func:`abandoned`) and RQ's
    (retried or failed). ``interrupted`` (a process dagrq itself stopped, at the end of a
    shutdown's drain time; or one whose node never began its attempt) puts the job back on its
    queue instead, spending no retry.

    Returns False, changing nothing, when another process took the lease first, the lease was
    renewed since, or (``members`` read here) the job never started: a claimed job that never
    started is the reconciler's to re-drive.
    """
    connection, queue_name = job.connection, job.origin
    if members is None:
        members = rqjobs.lease_members(connection, queue_name, job.id)
        if not members:
            return False
    key = rqjobs.started_key(queue_name)
    if members and not [m for m in members if scripts.take_lease(connection, key, m, cutoff)]:
        return False
    if not interrupted:  # dagrq_lease_expiries_total (docs/observability.md)
        connection.hincrby(keys.METRICS_KEY, "*|lease_expiries", 1)
    if interrupted:
        ref = rqjobs.ref_of(job)
        store = RunStore(connection, ref.run)
        if store.state() != "running" or (ref.own and store.lost_node_settled(ref.node)):
            return True  # nothing of it is wanted any more
        if ref.own:
            store.requeue(ref.node, reason)
        log.warning("run %s: node %s (%s): %s; put back", ref.run, ref.node, job.id, reason)
        rqjobs.put_back(connection, queue_name, job)
        return True
    if abandoned(job, reason):  # dagrq's side first: it reads the retries left
        rqjobs.settle_lost(connection, queue_name, job, reason)
    else:  # its outcome was recorded (its worker lost only RQ's bookkeeping): no retry
        rqjobs.close_lost(connection, job)
    return True
