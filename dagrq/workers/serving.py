"""One worker's life: :func:`serve_forever` runs a dagrq worker until it is asked to stop,
riding out Redis outages, with the reconciler (:mod:`dagrq.jobs.reconcile`) in a thread beside it.
``dagrq worker``'s pooled processes (:mod:`dagrq.workers.pool`) each run it."""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Iterable, Sequence
from typing import Any

from ..cluster import home_shard
from ..jobs.reconcile import Reconciler
from ..model.dag import DAG
from ..model.node import one_line_error
from ..store import keys, objects, rqjobs
from .leased import DEFAULT_LEASE_S, Report, make_worker

log = logging.getLogger(__name__)


def serve_forever(
    dags: Sequence[DAG],
    connection: Any,
    *,
    where: str,
    queue_names: Iterable[str] | None = None,
    name: str | None = None,
    fork: bool = True,
    lease_s: int = DEFAULT_LEASE_S,
    burst: bool = False,
    logging_level: str = "INFO",
    max_jobs: int | None = None,
    report: Report | None = None,
    warn_volatile: bool = True,
) -> bool:
    # long: one process's whole life, each restart of RQ's loop on one page (a loop with state)
    """Run a dagrq worker until it is asked to stop, riding out Redis outages.

    Waits for Redis to answer (with backoff) before the first job and after every outage: a
    restart, a failover or a pause ends RQ's work loop, and a new one starts once Redis is
    back. A node whose lease lapsed meanwhile is settled as any lost node. Warns once when
    the server persists nothing. ``where`` names the server in logs (password masked).
    Returns True after ``max_jobs`` jobs when given (it retires: a pooled process is then
    replaced, in burst mode too), False when stopped or drained;
    ``report`` is told each job's start and end (see :data:`~dagrq.workers.leased.Report`);
    ``warn_volatile`` False leaves the warning to the caller (a pool warns once).
    """
    stop = _Stop()
    warned, done, restarts = not warn_volatile, 0, 0
    reconciling: ReconcileThread | None = None
    while not stop.asked:
        if not wait_for_redis(connection, where, stop):
            return False
        if not warned:
            warn_if_volatile(connection, where)
            warned = True
        if reconciling is None and not burst:
            reconciling = ReconcileThread(connection, dags, lease_s)
            reconciling.start()
        worker = None
        try:
            if done or restarts:  # this process's own last loop: its registration is stale
                forget_own(connection, name)
            worker = make_worker(
                dags, connection, queue_names, name, fork=fork, lease_s=lease_s, report=report
            )
            worker.work(
                burst=burst,
                with_scheduler=True,
                logging_level=logging_level,
                max_jobs=max_jobs - done if max_jobs else None,
            )
        except Exception as exc:  # Redis went away under RQ's loop (its teardown raises)
            log.warning("worker loop stopped: %s", one_line_error(exc))
        done += getattr(worker, "jobs_run", 0)
        if max_jobs and done >= max_jobs:
            log.info("ran %d jobs (--max-jobs-per-process): this process retires", done)
            return True
        stop.asked = stop.asked or burst or getattr(worker, "stop_asked", False)
        stop.install()  # RQ's handlers are gone with its loop: SIGTERM must still stop us
        if not stop.asked:
            log.warning("worker loop ended without a stop request; starting it again")
            restarts += 1
            time.sleep(0.5)
    return False


def forget_own(connection: Any, name: str | None) -> None:
    """Clear the registration this process's last work loop left (an outage ended it before
    it could say goodbye): RQ refuses a worker whose name is registered and alive, and the name
    is this process's own, so that one is provably dead."""
    if name is None:
        return
    try:
        rqjobs.forget_worker(connection, name)
    except Exception as exc:  # its registration expires on its own
        log.debug("forgetting worker %s: %s", name, one_line_error(exc))


#: the reconciler's process sweeps the object stores once in this many passes
SWEEP_EVERY = 10


class ReconcileThread(threading.Thread):
    """Runs the reconciler (:mod:`dagrq.jobs.reconcile`) every sixth of the lease, in one process
    of all the workers at a time (a lock that expires by itself within one interval, so a
    dead holder delays nothing)."""

    def __init__(self, connection: Any, dags: Sequence[DAG], lease_s: int) -> None:
        super().__init__(name="dagrq-reconcile", daemon=True)
        self.interval_s = max(1.0, lease_s / 6)
        self.reconciler = Reconciler(
            connection,
            grace_s=max(2.0, self.interval_s),
            claim_grace_s=lease_s,
            lease_margin_s=self.interval_s,
            served={d.name: d for d in dags},
        )
        self.connection = connection
        #: the object stores of the served DAGs, swept every :data:`SWEEP_EVERY` passes
        self.stores = [d.output_store for d in dags if d.output_store is not None]
        #: whether this reconciler sweeps them: on a cluster, only the first shard's does
        #: (one sweep looks up every shard; N shards sweeping would list each store N times)
        self.sweeps = bool(self.stores) and home_shard(connection) is connection

    def run(self) -> None:
        """Every interval: take the lock if free, then reconcile every active run (and, every
        :data:`SWEEP_EVERY` passes, delete the objects of runs that are gone)."""
        lock = keys.reconcile_lock_key()
        hold_ms = int(self.interval_s * 900)
        passes = 0
        while True:
            time.sleep(self.interval_s)
            try:
                if self.connection.set(lock, os.getpid(), nx=True, px=hold_ms):
                    self.reconciler.pass_()
                    passes += 1
                    if self.sweeps and passes % SWEEP_EVERY == 1:
                        objects.sweep(self.connection, self.stores)
            except Exception as exc:  # Redis away: the next interval tries again
                log.debug("reconcile pass skipped: %s", one_line_error(exc))


class _Stop:
    """SIGTERM and SIGINT while no RQ work loop is running: stop waiting and exit."""

    def __init__(self) -> None:
        self.asked = False
        self.install()

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._ask)

    def _ask(self, signum: int, frame: Any) -> None:
        self.asked = True


def wait_for_redis(connection: Any, where: str, stop: _Stop, cap_s: float = 5.0) -> bool:
    """Block until ``connection`` answers a PING (backing off up to ``cap_s`` between tries);
    False when a stop was asked for meanwhile."""
    delay, said = 0.1, False
    while not stop.asked:
        try:
            connection.ping()
        except Exception as exc:
            if not said:
                log.warning("waiting for Redis at %s: %s", where, one_line_error(exc))
                said = True
            time.sleep(delay)
            delay = min(cap_s, delay * 2)
            continue
        if said:
            log.warning("Redis at %s answers again", where)
        return True
    return False


def warn_if_volatile(connection: Any, where: str) -> None:
    """Log a warning when the server would lose runs on a restart (no AOF; or RDB only)."""
    try:
        aof = connection.config_get("appendonly").get("appendonly")
        save = connection.config_get("save").get("save")
    except Exception:  # CONFIG may be refused (ACL, managed Redis): nothing to say
        return
    if aof == "yes":
        return
    if not save:
        log.warning(
            "Redis at %s persists nothing (appendonly no, no save points): a restart loses "
            "every run; run it with --appendonly yes",
            where,
        )
    else:
        log.warning(
            "Redis at %s keeps RDB snapshots only (save %s): a restart loses what changed since "
            "the last one; run it with --appendonly yes for every write",
            where,
            save,
        )
