"""Leases: a node whose worker died is found, and retried or failed by its rule.

A worker holds a lease on the job it runs: RQ's started-job registry entry, which the worker
renews every third of the lease (``lease_s``) while the node runs. Two ways a node's worker
can be lost, both settled here through :func:`abandoned`:

- the work horse of a forking worker dies (SIGKILL, out of memory): the worker itself sees
  it at once (:meth:`LeasedWorker.handle_work_horse_killed`);
- the whole worker dies (SIGKILL, the machine): its lease expires, and the next registry
  clean-up by any live worker of the queue (every ``lease_s / 2``) calls the job's failure
  callback, :func:`on_failure`, with RQ's ``AbandonedJobError``.

Settling follows the node's ``retry=``: with retries left, RQ requeues the job and the node
shows ``queued`` again; without, the node fails (``worker lost ...``) and its children get
that outcome, so joins still fire exactly once and the run ends. A killed node's body may
run again (at least once); if the lost worker was only slow, its late report is refused
(``complete.lua`` compares attempts).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from typing import Any

from rq import SimpleWorker, Worker
from rq.exceptions import AbandonedJobError
from rq.job import Job
from rq.worker import WorkerStatus

from . import join, keys
from .mapping import enqueue_alone
from .runtime import DEFAULT_LEASE_S, deliver, load_plan
from .status import FINAL_NODE_STATES

log = logging.getLogger(__name__)


def on_failure(job: Job, connection: Any, exc_type: Any, exc: Any, traceback: Any) -> None:
    """RQ failure callback of every dagrq job: settles a job RQ found abandoned.

    A node's own exceptions are recorded by the node's job before RQ sees them, so only
    ``AbandonedJobError`` (the job's lease expired with its worker gone) is acted on.
    """
    if exc_type is AbandonedJobError:
        abandoned(job, "worker lost: its lease expired while the node was running")


def abandoned(job: Job, reason: str) -> None:
    """Settle ``job``, whose worker died while running it: requeue the node when RQ will
    retry the job (it has retries left), else fail it (or, for a chunk of a mapped node,
    its unrecorded items) with ``reason``. Idempotent; a node already final is left alone.
    """
    kwargs = job.kwargs
    conn = job.connection
    run, node = kwargs["run"], kwargs["node"]
    state, plan_hash = conn.hmget(keys.run_key(run), "state", "plan")
    if state != b"running" or not isinstance(plan_hash, bytes):
        return
    plan = load_plan(conn, kwargs["dag"], plan_hash.decode())
    spec = plan.specs[node]
    retrying = bool(job.retries_left and job.retries_left > 0)
    log.warning("run %s: node %s (%s): %s", run, node, job.id, reason)
    chunk, item = kwargs.get("chunk"), kwargs.get("item")
    if chunk is None and item is None:
        node_state, expanded = conn.hmget(keys.nodes_key(run), f"{node}:state", f"{node}:expanded")
        final = isinstance(node_state, bytes) and node_state.decode() in FINAL_NODE_STATES
        if final or expanded is not None:
            return  # outcome recorded (or a map's items all enqueued) before the worker died
        if retrying:  # RQ runs the job again (a node lost before it began stays queued)
            join.requeue(conn, run, node, reason)
        else:
            deliver(plan.specs, plan.ttl_s, conn, run, node, "failed", error=reason)
        return
    if item is not None:
        indices = [item]
    else:
        assert chunk is not None
        total = int(conn.hget(keys.nodes_key(run), f"{node}:items_total") or 0)
        indices = list(range(chunk * spec.chunk, min(total, (chunk + 1) * spec.chunk)))
    if item is not None or spec.chunk == 1:
        if retrying:
            return  # RQ runs this item's job again
    elif spec.retry and spec.retry.max > 0:
        enqueue_alone(plan.dag, plan.ttl_s, conn, run, spec, indices)  # each on its own
        return
    done = join.record_items(
        conn,
        run,
        spec,
        [plan.specs[c] for c in spec.children],
        ttl_s=plan.ttl_s,
        errors=[(i, reason) for i in indices],
    )
    for child in done.skipped:
        deliver(plan.specs, plan.ttl_s, conn, run, child, "skipped")


class _Leased:
    """Lease settings shared by both worker classes (mixed in before RQ's class)."""

    job_monitoring_interval: int
    maintenance_interval: int

    def __init__(self, *args: Any, lease_s: int = DEFAULT_LEASE_S, **kwargs: Any) -> None:
        super().__init__(*args, **{**self._lease(lease_s), **kwargs})

    @staticmethod
    def _lease(lease_s: int) -> dict[str, int]:
        """RQ settings for a lease of ``lease_s`` seconds (renewed every third of it, whole
        seconds; registries cleaned every half of it)."""
        return {
            "job_monitoring_interval": max(1, lease_s // 3),
            "maintenance_interval": max(1, lease_s // 2),
        }

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """The lease: three renewal intervals (the horse process computes it alike)."""
        return 3 * int(self.job_monitoring_interval)

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes this often to clean registries (RQ's default is 405 s)."""
        return max(1, int(self.maintenance_interval))


class LeasedWorker(_Leased, Worker):
    """RQ's forking ``Worker`` with dagrq leases; a dead work horse is settled at once."""

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        """The horse died without reporting (killed, crashed): settle its node now."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]
        if ret_val is None:
            why = f"its work horse overran the {job.timeout} s timeout and was killed"
        elif os.WIFSIGNALED(ret_val):
            why = f"its work horse died (signal {os.WTERMSIG(ret_val)})"
        else:
            why = f"its work horse exited with status {os.waitstatus_to_exitcode(ret_val)}"
        try:
            abandoned(job, f"worker lost: {why}")
        except Exception:  # the lease path settles it later
            log.exception("settling %s after its work horse died", job.id)


class LeasedSimpleWorker(_Leased, SimpleWorker):
    """RQ's ``SimpleWorker`` with dagrq leases: a thread renews the lease while a node runs
    (RQ's own SimpleWorker renews it only when a job starts)."""

    def __init__(self, *args: Any, lease_s: int = DEFAULT_LEASE_S, **kwargs: Any) -> None:
        super().__init__(*args, lease_s=lease_s, **kwargs)
        self._running: tuple[Job, Any] | None = None
        self._renewer: threading.Thread | None = None

    def execute_job(self, job: Job, queue: Any) -> None:
        """Run ``job`` in this process while the renewal thread keeps its lease."""
        execution = self.prepare_execution(job)
        if self._renewer is None:
            self._renewer = threading.Thread(target=self._renew, name="dagrq-lease", daemon=True)
            self._renewer.start()
        self._running = (job, execution)
        try:
            self.perform_job(job, queue, execution)
        finally:
            self._running = None
        self.set_state(WorkerStatus.IDLE)

    def _renew(self) -> None:
        while True:
            time.sleep(self.job_monitoring_interval)
            running = self._running
            if running is None:
                continue
            try:  # a renewal racing the job's end only re-adds an entry clean-up ignores
                self.maintain_heartbeats(*running)
            except Exception:  # a missed renewal is retried next tick
                log.exception("renewing the lease of %s", running[0].id)
