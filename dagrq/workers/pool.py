"""``dagrq worker``'s supervised pool: long-lived processes that run nodes in-process, and a
supervisor that replaces them, settles what they were running, and enforces hard timeouts.

Built on RQ's :class:`~rq.worker_pool.WorkerPool` (its process table, start, respawn and stop);
what dagrq adds:

- each process runs :func:`dagrq.workers.serving.serve_forever` with RQ's ``SimpleWorker``
  (nodes run in the process, no fork per job; ``isolate`` keeps RQ's fork-per-job
  ``Worker``), serving every DAG given, and retires after ``max_jobs`` (bounded growth from
  leaky nodes);
- each process tells the supervisor, through a pipe, which job it runs and when that job is
  to be killed (its ``timeout=`` plus :data:`~dagrq.workers.leased.KILL_GRACE_S`);
- the supervisor waits on the processes' pipes and exit sentinels together (RQ's loop polls
  every second), so a process that dies mid-node (``os._exit``, the OOM killer, a segfault)
  is replaced and its node settled at once (:func:`dagrq.lease.settle_lost`: retried if
  ``retry=`` allows, else failed), not after its lease expires;
- a node past its timeout that does not stop (blocked in C, signals masked) has its process
  killed: the timeout is hard;
- SIGTERM (or SIGINT) drains: running nodes finish, no new ones start, for at most
  ``drain_s`` seconds; then, or at a second signal, the processes are killed and their nodes
  put back on their queues without spending a retry.

A process lives in its own process group, so a terminal's Ctrl-C reaches only the supervisor,
and dies with it (Linux's parent-death signal): killing the supervisor kills the worker.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from multiprocessing.connection import Connection, wait
from typing import Any, cast

from rq.worker_pool import WorkerData, WorkerPool

from ..cluster import SHARD_ENV, ShardClient, sibling
from ..jobs.lost import settle_lost
from ..model.dag import DAG
from ..model.node import one_line_error
from ..store import rqjobs
from . import logformat
from .hooks import HookThread, hooked
from .leased import DEFAULT_LEASE_S, how_it_ended, rq_queues
from .processes import die_with
from .scheduling import SchedulerThread
from .serving import serve_forever, warn_if_volatile
from .triggers import TriggerThread

log = logging.getLogger(__name__)

#: seconds a SIGTERM'd pool lets running nodes finish before it kills them (and puts their
#: nodes back on their queues)
DEFAULT_DRAIN_S = 60.0
#: the longest the supervisor sleeps between looks at deadlines and the drain clock
TICK_S = 0.25
_FORK = multiprocessing.get_context("fork")
_SIGNALS = {signal.SIGTERM, signal.SIGINT}
RETIRED = 75
"""A pool process's exit code when it retired after ``max_jobs`` (``--max-jobs-per-process``):
the pool replaces it, in burst mode too (its queues may still hold work)."""


@dataclass
class _Slot:
    """What the supervisor knows of one process: its RQ worker name, the job it runs, when that
    job is to be killed, and why the supervisor killed it (if it did)."""

    rq_name: str
    reader: Connection
    writer: Connection | None
    job_id: str | None = None
    kill_at: float | None = None
    killed_for: str | None = None
    interrupted: bool = False
    #: the shard of a cluster it serves (None: one Redis)
    shard: int | None = None
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class PoolSettings:
    """How each process of a pool serves (see :func:`dagrq.workers.serving.serve_forever`)."""

    dags: Sequence[DAG]
    connect: Callable[[], Any]
    where: str
    queue_names: Sequence[str] | None = None
    isolate: bool = False
    lease_s: int = DEFAULT_LEASE_S
    max_jobs: int | None = None
    logging_level: str = "INFO"
    #: warn when the server persists nothing (not for the embedded server: it is for trying)
    warn_volatile: bool = True
    #: fire the DAGs' schedules (one leader among every pool: see dagrq.workers.scheduling)
    schedule: bool = True


class Pool(WorkerPool):
    """A supervised pool of ``concurrency`` dagrq worker processes (see the module docstring).

    Args:
        settings: what every process serves, and how.
        concurrency: processes kept running.
        name: prefix of the processes' RQ worker names (default ``<host>.<pid>``).
        drain_s: seconds a drain may take before running nodes are killed and put back.
    """

    def __init__(
        self,
        settings: PoolSettings,
        concurrency: int,
        *,
        name: str | None = None,
        drain_s: float = DEFAULT_DRAIN_S,
    ) -> None:
        self.settings = settings
        self.drain_s = drain_s
        self.prefix = name or f"{socket.gethostname()}.{os.getpid()}"
        self._slots: dict[str, _Slot] = {}
        self._spawned = 0
        self._drain_until: float | None = None
        self._logging_level = settings.logging_level
        connection = settings.connect()
        queues = rq_queues(settings.dags, settings.queue_names)
        # on a cluster every shard needs a process: each serves one (dagrq.cluster)
        self.shards = connection.shards if isinstance(connection, ShardClient) else 0
        super().__init__(queues, connection, num_workers=max(concurrency, self.shards))

    # ------------------------------------------------------------ processes
    def get_worker_process(
        self, name: str, burst: bool, _sleep: float = 0, logging_level: str = "INFO"
    ) -> Any:
        """A forked process running :func:`_serve` for pool slot ``name``, with a pipe back."""
        reader, writer = _FORK.Pipe(duplex=False)
        self._spawned += 1
        slot = _Slot(f"{self.prefix}.{self._spawned}", reader, writer, shard=self._next_shard())
        self._slots[name] = slot
        return _FORK.Process(
            target=_serve,
            args=(self.settings, slot.rq_name, burst, writer, os.getpid(), slot.shard),
            name=f"dagrq worker {slot.rq_name}",
        )

    def _next_shard(self) -> int | None:
        """The shard with the fewest processes (None on one Redis)."""
        if not self.shards:
            return None
        serving = Counter(s.shard for s in self._slots.values())
        return min(range(self.shards), key=lambda i: (serving[i], i))

    def _on(self, slot: _Slot) -> Any:
        """The client of the shard ``slot`` serves (the pool's own on one Redis)."""
        if slot.shard is None:
            return self.connection
        return sibling(cast(ShardClient, self.connection), slot.shard)

    def start_worker(
        self,
        count: int | None = None,
        burst: bool = True,
        _sleep: float = 0,
        logging_level: str = "INFO",
    ) -> None:
        """RQ's start, with the stop signals held off across the fork (a child must not run
        the supervisor's handlers) and the child's end of its pipe closed here."""
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
        try:
            super().start_worker(count, burst, _sleep, self._logging_level)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)
        for slot in self._slots.values():
            if slot.writer is not None:
                slot.writer.close()
                slot.writer = None

    def reap_workers(self) -> None:
        """Handle every process that has exited (without RQ's 0.1 s join per live process)."""
        for data in list(self.worker_dict.values()):
            if not data.process.is_alive():
                self.handle_dead_worker(data)

    def handle_dead_worker(self, worker_data: WorkerData) -> None:
        """Forget the process, kill what it left in its group (RQ's scheduler), and settle
        the node it was running."""
        super().handle_dead_worker(worker_data)
        slot = self._slots.pop(worker_data.name, None)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(worker_data.pid, signal.SIGKILL)
        if slot is None:
            return
        self._read(slot)
        slot.reader.close()
        code = worker_data.process.exitcode
        if code == RETIRED and self._burst and self.status != self.Status.STOPPED:
            self.start_worker(burst=True, logging_level=self._logging_level)  # work may remain
        if code in (0, RETIRED):
            return  # stopped, drained or retired: it said goodbye to RQ itself
        if slot.killed_for is None:
            log.warning("worker process %s ended (%s)", slot.rq_name, how_it_ended(code))
        if slot.job_id is not None:
            reason = slot.killed_for or f"worker lost: its process died ({how_it_ended(code)})"
            self._settle(slot, slot.job_id, reason)
        self._forget(slot)

    def _settle(self, slot: _Slot, job_id: str, reason: str) -> None:
        """Settle the node whose process is gone; on any error its lease settles it later."""
        interrupted = slot.interrupted
        try:
            job = rqjobs.fetch_job(job_id, self._on(slot))
            settle_lost(job, reason, interrupted=interrupted)
        except rqjobs.NoSuchJobError:
            pass
        except Exception as exc:
            log.warning("settling %s failed (its lease will): %s", job_id, one_line_error(exc))

    def _forget(self, slot: _Slot) -> None:
        try:
            rqjobs.forget_worker(self._on(slot), slot.rq_name)
        except Exception as exc:  # its registration expires on its own
            log.debug("forgetting worker %s: %s", slot.rq_name, one_line_error(exc))

    # ------------------------------------------------------------ the loop
    def start(self, burst: bool = False, logging_level: str = "INFO") -> None:
        """Run the pool until it is stopped (or, with ``burst``, until every process has
        emptied its queues and exited)."""
        self._burst = burst
        self._logging_level = logging_level
        self.status = self.Status.STARTED
        configure_logging(logging_level)
        log.info(
            "dagrq worker pool %s: %d processes%s (%s) serving %s",
            self.prefix,
            self.num_workers,
            _spread(self.num_workers, self.shards),
            "a work horse per job" if self.settings.isolate else "nodes run in-process",
            ", ".join(d.name for d in self.settings.dags),
        )
        if self.settings.warn_volatile:
            warn_if_volatile(self.connection, self.settings.where)
        self.start_workers(burst=burst, logging_level=logging_level)
        self._install_signal_handlers()  # type: ignore[no-untyped-call]
        started = (self._scheduler(burst), *self._triggers(burst), *self._hooks())
        threads = [t for t in started if t is not None]
        while self.worker_dict:
            self._wait()
            self._enforce_deadlines()
            self.check_workers(respawn=not burst)
            if self.status == self.Status.STOPPED:
                for thread in threads:
                    thread.stop()  # a draining pool fires and starts nothing more
        for thread in threads:
            thread.stop()
            thread.join(timeout=5)
        log.info("dagrq worker pool %s stopped", self.prefix)

    def _scheduler(self, burst: bool) -> SchedulerThread | None:
        """The scheduler thread, when a DAG served has a schedule (not in burst mode)."""
        if burst or not self.settings.schedule:
            return None
        dags = [d for d in self.settings.dags if d.schedules]
        if not dags:
            return None
        thread = SchedulerThread(self.settings.connect, dags)
        thread.start()
        count = sum(len(d.schedules) for d in dags)
        log.info("scheduler: %d schedules of %s", count, ", ".join(d.name for d in dags))
        return thread

    def _per_shard(self) -> list[Callable[[], Any]]:
        """A connect of each shard's client (the pool's settings' own on one Redis): a run's
        events and hook entries are written on its shard."""
        if not self.shards:
            return [self.settings.connect]
        cluster = cast(ShardClient, self.connection)
        return [functools.partial(sibling, cluster, i) for i in range(self.shards)]

    def _triggers(self, burst: bool) -> list[TriggerThread]:
        """The event-trigger threads (one per shard), when a DAG served has ``triggers=``
        (not in burst mode)."""
        dags = [d for d in self.settings.dags if d.triggers]
        if burst or not dags:
            return []
        threads = [TriggerThread(connect, dags) for connect in self._per_shard()]
        for thread in threads:
            thread.start()
        log.info("event triggers of %s", ", ".join(d.name for d in dags))
        return threads

    def _hooks(self) -> list[HookThread]:
        """The alert-hook threads (one per shard), when a DAG served has hooks or this
        process traces (in burst mode too: it reads once more as the pool stops)."""
        dags = hooked(self.settings.dags)
        if not dags:
            return []
        threads = [HookThread(connect, dags) for connect in self._per_shard()]
        for thread in threads:
            thread.start()
        log.info("alert hooks and run spans of %s", ", ".join(d.name for d in dags))
        return threads

    def _wait(self) -> None:
        """Sleep until a process reports or exits (or a tick passes); read the reports."""
        waiting: list[Any] = [s.reader for s in self._slots.values()]
        waiting += [d.process.sentinel for d in self.worker_dict.values()]
        ready = wait(waiting, timeout=TICK_S)
        if ready:
            for slot in self._slots.values():
                if slot.reader in ready:
                    self._read(slot)

    @staticmethod
    def _read(slot: _Slot) -> None:
        """Take in what the process reported: ``(job id, kill after s)`` or ``(None, None)``."""
        try:
            while slot.reader.poll():
                job_id, kill_after = slot.reader.recv()
                slot.job_id = job_id
                slot.kill_at = None if kill_after is None else time.monotonic() + kill_after
        except (EOFError, OSError):
            pass

    def _enforce_deadlines(self) -> None:
        """Kill the process of a node past its hard deadline; kill everything when a drain's
        time is up."""
        now = time.monotonic()
        if self._drain_until is not None and now >= self._drain_until:
            self._drain_until = None
            self._kill_all(f"its worker was shut down after a {self.drain_s:g} s drain")
        for name, slot in self._slots.items():
            if slot.kill_at is not None and now >= slot.kill_at and slot.killed_for is None:
                timeout = self._timeout_of(slot)
                slot.killed_for = (
                    f"timed out after {timeout} s (it did not stop; its process was killed)"
                )
                log.warning("%s: %s", slot.job_id, slot.killed_for)
                self._kill(name)

    def _timeout_of(self, slot: _Slot) -> str:
        try:
            return str(rqjobs.fetch_job(slot.job_id or "", self._on(slot)).timeout)
        except Exception:
            return "its timeout"

    def _kill(self, name: str) -> None:
        data = self.worker_dict.get(name)
        if data is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(data.pid, signal.SIGKILL)

    def _kill_all(self, why: str) -> None:
        for name, slot in self._slots.items():
            if slot.job_id is not None and slot.killed_for is None:
                slot.killed_for, slot.interrupted = why, True
            self._kill(name)

    # ------------------------------------------------------------ stopping
    def request_stop(self, signum: Any = None, frame: Any = None) -> None:
        """First SIGTERM/SIGINT: drain (running nodes finish, no new ones start) for at most
        ``drain_s`` seconds. A second: stop now (nodes put back on their queues)."""
        if self.status == self.Status.STOPPED:
            log.warning("stopping now: running nodes are put back on their queues")
            self._kill_all("its worker was stopped")
            return
        busy = sum(1 for s in self._slots.values() if s.job_id is not None)
        log.log(
            logging.WARNING if busy else logging.INFO,
            "draining: %d nodes running, no new ones start; stopping within %g s (signal again "
            "to stop now)",
            busy,
            self.drain_s,
        )
        self.status = self.Status.STOPPED
        self._drain_until = time.monotonic() + self.drain_s
        for data in list(self.worker_dict.values()):
            self.stop_worker(data, sig=signal.SIGTERM)


#: the format of a worker's own log lines (on stderr; nodes' output goes to their logs)
LOG_FORMAT = logformat.TEXT


def configure_logging(level: str) -> None:
    """Worker log lines (RQ's and dagrq's) to stderr at ``level``, as text (:data:`LOG_FORMAT`)
    or JSON lines (``$DAGRQ_LOG_FORMAT``, :mod:`dagrq.workers.logformat`);
    RQ then adds no handler of its own (it would write to stdout)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logformat.formatter())
    for name in ("rq", "dagrq"):
        logger = logging.getLogger(name)
        for old in list(logger.handlers):
            logger.removeHandler(old)
        logger.addHandler(handler)
        logger.setLevel(level.upper())
        logger.propagate = False


def _spread(processes: int, shards: int) -> str:
    """How a cluster pool's processes serve its shards, for its first log line.

    Examples:
        >>> _spread(12, 6), _spread(7, 6), _spread(4, 0)
        (', each of 6 shards served by 2', ', each of 6 shards served by 1 or 2', '')
    """
    if not shards:
        return ""
    low, high = processes // shards, -(-processes // shards)
    each = str(low) if low == high else f"{low} or {high}"
    return f", each of {shards} shards served by {each}"


def _serve(
    settings: PoolSettings,
    rq_name: str,
    burst: bool,
    writer: Connection,
    parent: int,
    shard: int | None,
) -> None:
    """A pool process: its own group, dies with the supervisor, serves until stopped (on a
    cluster, the runs of ``shard``)."""
    os.setpgrp()
    if shard is not None:
        os.environ[SHARD_ENV] = str(shard)
    die_with(parent)
    configure_logging(settings.logging_level)
    for sig in _SIGNALS:
        signal.signal(sig, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _SIGNALS)

    def report(job_id: str | None, kill_after: float | None) -> None:
        writer.send((job_id, kill_after))

    retired = serve_forever(
        settings.dags,
        settings.connect(),
        where=settings.where,
        queue_names=settings.queue_names,
        name=rq_name,
        fork=settings.isolate,
        lease_s=settings.lease_s,
        burst=burst,
        logging_level=settings.logging_level,
        max_jobs=settings.max_jobs,
        report=report,
        warn_volatile=False,
    )
    if retired:
        sys.exit(RETIRED)


def local_pool(
    dags: Sequence[DAG],
    connect: Callable[[], Any],
    where: str,
    concurrency: int,
    options: dict[str, Any],
    drain_s: float,
) -> None:
    """``dagrq run``'s local pool, in a process it forked
    (:func:`~dagrq.workers.processes.fork_process`): :func:`run_pool` of ``concurrency``
    processes serving ``dags`` (``options``: more :class:`PoolSettings` fields)."""
    settings = PoolSettings(dags=dags, connect=connect, where=where, **options)
    run_pool(settings, concurrency, drain_s=drain_s)


def run_pool(
    settings: PoolSettings,
    concurrency: int,
    *,
    burst: bool = False,
    name: str | None = None,
    drain_s: float = DEFAULT_DRAIN_S,
) -> None:
    """Run a :class:`Pool` of ``concurrency`` processes in this process until it stops;
    its connections are closed when it returns."""
    pool = Pool(settings, concurrency, name=name, drain_s=drain_s)
    try:
        pool.start(burst=burst, logging_level=settings.logging_level)
    finally:
        pool.connection.connection_pool.disconnect()
