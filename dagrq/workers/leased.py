"""The RQ worker classes that hold leases, and the dequeue that never loses a job.

:func:`make_worker` builds the worker each process of ``dagrq worker`` runs: RQ's
``SimpleWorker`` (nodes run in the process; the default, under :mod:`dagrq.workers.pool`'s
supervisor) or its forking ``Worker`` (``--isolate``: a work horse per job), listening on the
queues of the DAGs it serves, with leases renewed while a node runs (see :mod:`dagrq.lease`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from rq import SimpleWorker, Worker
from rq.defaults import DEFAULT_LOGGING_DATE_FORMAT, DEFAULT_LOGGING_FORMAT
from rq.scheduler import RQScheduler
from rq.utils import now as rq_now
from rq.worker import BaseWorker, WorkerStatus

from ..errors import NodeStopped
from ..jobs.attempt import ride_out_outages
from ..jobs.entry import kept, serve
from ..jobs.lost import abandoned
from ..model.dag import DAG
from ..store import keys, rqjobs
from ..store.runs import RunStore
from .rqparts import HAND, ClaimingQueue, Scheduler

log = logging.getLogger(__name__)

#: default seconds without a heartbeat after which a running node's worker is presumed lost
DEFAULT_LEASE_S = 60
#: the shortest lease allowed: renewals every second, expiry after six
LEASE_FLOOR_S = 5


def lease_settings(lease_s: int) -> dict[str, int]:
    """RQ settings for a lease of ``lease_s`` seconds: renewed every third of it (whole
    seconds), registries cleaned every half of it.

    Raises:
        ValueError: a lease under :data:`LEASE_FLOOR_S`.

    Examples:
        >>> lease_settings(60)
        {'job_monitoring_interval': 20, 'maintenance_interval': 30}
    """
    if lease_s < LEASE_FLOOR_S:
        raise ValueError(f"a lease of {lease_s} s is under the floor of {LEASE_FLOOR_S} s")
    return {
        "job_monitoring_interval": max(1, lease_s // 3),
        "maintenance_interval": max(1, lease_s // 2),
    }


def worker_ttl(lease_s: int) -> int:
    """RQ's ``worker_ttl`` for a lease: an idle worker heartbeats every half lease, so its
    registration outlives one heartbeat and a dead worker's is gone within about that plus
    RQ's 60 s margin (RQ's default keeps it 480 s).

    Examples:
        >>> worker_ttl(60), worker_ttl(5)
        (60, 32)
    """
    return max(1, lease_s // 2) + 30


def heartbeat_ttl(lease_s: int) -> int:
    """Seconds a renewal keeps a running node's lease alive: the lease plus one renewal
    interval, so that a renewal due during a stall shorter than the lease still finds the
    lease alive and no second attempt can start.

    Examples:
        >>> heartbeat_ttl(60), heartbeat_ttl(5)
        (80, 6)
    """
    return lease_s + lease_settings(lease_s)["job_monitoring_interval"]


#: seconds a node past its ``timeout=`` has to stop by itself (RQ interrupts it with SIGALRM)
#: before its pooled process is killed: the hard stop for a node blocked in C
KILL_GRACE_S = 5.0


def hard_deadline(timeout: Any) -> float | None:
    """Seconds after its start at which a node running in a pooled process is killed: its
    RQ ``timeout`` plus :data:`KILL_GRACE_S`; None for no timeout (RQ's ``-1``).

    Examples:
        >>> hard_deadline(10), hard_deadline(-1), hard_deadline(None)
        (15.0, None, None)
    """
    if timeout is None or float(timeout) <= 0:
        return None
    return float(timeout) + KILL_GRACE_S


def how_it_ended(code: int | None) -> str:
    """How a process ended, from its exit code (negative: the signal that killed it).

    Examples:
        >>> how_it_ended(7), how_it_ended(-9)
        ('exit status 7', 'signal 9, SIGKILL')
    """
    if code is None:
        return "still running"
    if code < 0:
        return f"signal {-code}, {signal.Signals(-code).name}"
    return f"exit status {code}"


#: the most often a worker sends RQ's own heartbeat and ``rq suspend`` check (seconds)
BOOKKEEPING_S = 1.0


#: told when a job starts, ``(job id, seconds after which its process is to be killed or
#: None)``, and when it ends, ``(None, None)``: how a pooled process keeps its supervisor
#: informed (:mod:`dagrq.workers.pool`)
Report = Callable[[str | None, float | None], None]


class _Leased:
    """Leases, the claiming dequeue, cancellation checks and the start/end report shared by
    both worker classes (mixed in before RQ's class)."""

    job_monitoring_interval: int
    maintenance_interval: int
    connection: Any
    key: str
    _stopped_job_id: str | None
    scheduler: RQScheduler | None

    def __init__(
        self,
        *args: Any,
        lease_s: int = DEFAULT_LEASE_S,
        report: Report | None = None,
        serves: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        self.lease_s = lease_s
        self.stop_asked = False
        self.report = report
        self.serves = dict(serves or {})
        self.jobs_run = 0
        self._beat = self._suspension_checked = -math.inf
        kwargs.setdefault("queue_class", ClaimingQueue)
        kwargs.setdefault("worker_ttl", worker_ttl(lease_s))
        super().__init__(*args, **{**lease_settings(lease_s), **kwargs})

    def _start_scheduler(
        self,
        burst: bool = False,
        logging_level: str | None = "INFO",
        date_format: str = DEFAULT_LOGGING_DATE_FORMAT,
        log_format: str = DEFAULT_LOGGING_FORMAT,
    ) -> None:
        """RQ's scheduler start, with a scheduler that dies with this process."""
        scheduler = Scheduler(
            self.queues,  # type: ignore[attr-defined]
            connection=self.connection,
            logging_level=logging_level or "INFO",
            date_format=date_format,
            log_format=log_format,
            serializer=self.serializer,  # type: ignore[attr-defined]
        )
        self.scheduler = scheduler
        scheduler.acquire_locks()  # type: ignore[no-untyped-call]
        if not scheduler.acquired_locks:
            return
        if not burst:
            scheduler.start()
            return
        try:  # a burst worker moves what is due once, as RQ's does
            scheduler.register_birth()
            scheduler.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
        finally:
            scheduler.release_locks()  # type: ignore[no-untyped-call]
            scheduler.register_death()

    def register_birth(self) -> None:
        """RQ's registration, plus which version of which DAG this worker serves (``dagrq
        workers`` lists them; the field goes with RQ's worker hash)."""
        super().register_birth()  # type: ignore[misc]
        if self.serves:
            self.connection.hset(self.key, keys.SERVES_FIELD, json.dumps(self.serves))

    # RQ's bookkeeping around every job, trimmed: of the 22 round trips RQ's SimpleWorker makes
    # per job, 13 are worker heartbeats (three round trips each, three times), `rq suspend`
    # checks and state writes that say what the next write says again.
    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's worker heartbeat; outside a pipeline, at most every :data:`BOOKKEEPING_S`
        (the registration lives ``worker_ttl`` + 60 s). Lease renewals are not throttled."""
        now = time.monotonic()
        if pipeline is None and timeout is None and now - self._beat < BOOKKEEPING_S:
            return
        self._beat = now
        super().heartbeat(timeout, pipeline)  # type: ignore[misc]

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's ``rq suspend`` check, at most every :data:`BOOKKEEPING_S`."""
        now = time.monotonic()
        if now - self._suspension_checked < BOOKKEEPING_S:
            return
        self._suspension_checked = now
        super().check_for_suspension(burst)  # type: ignore[misc]

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """RQ's worker state, written only when it changes (RQ writes ``idle`` again before
        every dequeue; the end of a job writes it in the job's own transaction)."""
        if pipeline is None and state == getattr(self, "_state", None):
            return
        super().set_state(state, pipeline)  # type: ignore[misc]

    def cleanup_execution(self, job: Any, pipeline: Any, execution: Any = None) -> None:
        """RQ's clean-up after a job, which says ``idle`` in the same transaction."""
        super().cleanup_execution(job, pipeline, execution)  # type: ignore[misc]
        super().set_state(WorkerStatus.IDLE, pipeline)  # type: ignore[misc]

    def handle_execution_ended(self, job: Any, queue: Any, heartbeat_ttl: int) -> None:
        """RQ's end of an execution without its job-heartbeat round trip: the job's outcome
        is written in the next transaction, and no dagrq job has a success callback for the
        heartbeat to cover."""
        job.ended_at = job.last_heartbeat = rq_now()

    def _started(self, job: Any, kill_after_s: float | None) -> None:
        """Count ``job`` and tell the supervisor it runs here."""
        self.jobs_run += 1
        if self.report is not None:
            self.report(job.id, kill_after_s)

    def _ended(self) -> None:
        if self.report is not None:
            self.report(None, None)

    def request_stop(self, signum: Any, frame: Any) -> None:
        """SIGTERM/SIGINT: RQ's warm shutdown, remembered so the worker does not restart."""
        self.stop_asked = True
        super().request_stop(signum, frame)  # type: ignore[misc]

    def _shutdown(self) -> None:
        """RQ's warm shutdown, never inside a job. RQ raises ``StopRequested`` unless the
        worker says ``busy``; raised in RQ's handling of a job's end (the worker already says
        ``idle`` there), ``perform_job`` swallows it: the stop is lost, and RQ records as
        failed a job dagrq recorded as succeeded. So while this process holds a job (from
        its claim to the end of its bookkeeping) the stop is only noted, and the work loop
        stops before it takes another."""
        if not HAND.holding:
            super()._shutdown()  # type: ignore[misc]
            return
        self._stop_requested = HAND.stop_noted = True
        if getattr(self, "scheduler", None):
            self.stop_scheduler()  # type: ignore[attr-defined]

    def unsubscribe(self) -> None:
        """RQ's, with the listening thread told to stop *before* the unsubscribe: RQ tells
        it after, and when the server's reply wakes the thread first it waits for the next
        message again, and the worker's exit waits out RQ's one-second join."""
        if self.pubsub_thread:  # type: ignore[attr-defined]
            self.pubsub_thread.stop()  # type: ignore[attr-defined]
        super().unsubscribe()  # type: ignore[misc]

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        """The lease's expiry (the horse process computes it alike): see :func:`heartbeat_ttl`."""
        return heartbeat_ttl(self.lease_s)

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes this often to clean registries (RQ's default is 405 s)."""
        return max(1, int(self.maintenance_interval))

    def prepare_job_execution(self, job: Any, remove_from_intermediate_queue: bool = False) -> None:
        """RQ's start of a job, which also takes it off its intermediate list (RQ does that
        only for a worker of one queue; a dagrq worker always claims through that list)."""
        super().prepare_job_execution(job, remove_from_intermediate_queue=True)  # type: ignore[misc]

    def _canceled(self, job: Any) -> bool:
        """True when the run of ``job`` no longer runs (checked at every lease renewal: a
        cancel stops the node even where RQ's stop command cannot reach this worker)."""
        try:
            ref = rqjobs.ref_of(job)
        except ValueError:
            return False
        state = RunStore(self.connection, ref.run).state()
        return state is not None and state != "running"


class LeasedWorker(_Leased, Worker):
    """RQ's forking ``Worker`` with dagrq leases; a dead work horse is settled at once."""

    def execute_job(self, job: Any, queue: Any) -> None:
        """RQ's fork-and-monitor, reported (its own monitor kills an overrunning horse)."""
        self._started(job, None)
        try:
            super().execute_job(job, queue)
        finally:
            self._ended()
            HAND.holding = False

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        """Stop the work horse when the node's run was canceled, else renew the lease."""
        try:
            canceled = self._canceled(job)
        except Exception:
            log.exception("checking whether the run of %s was canceled", job.id)
            canceled = False
        if canceled:
            self._stopped_job_id = job.id
            self.kill_horse()
            return
        super().maintain_heartbeats(job, execution)

    def kill_horse(self, sig: Any = signal.SIGKILL) -> None:
        """Kill the work horse, if one runs. RQ's ``os.killpg(os.getpgid(horse_pid))``
        SIGKILLs the worker itself when no horse runs: ``horse_pid`` is 0 from the horse's
        end (and ``getpgid(0)`` is the caller's group) while a cancel's stop command for the
        job that just ended can still find it, and a horse that has not yet made its own
        group shares the worker's. Killed here: the horse by its pid, and its group (what
        the body started) by the horse's pid, which names it once the horse has made it."""
        pid = self.horse_pid
        if not pid:
            return
        for kill in (os.killpg, os.kill):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                kill(pid, sig)

    def handle_work_horse_killed(self, job: Any, retpid: int, ret_val: int, rusage: Any) -> None:
        """The horse died without reporting (killed, crashed): settle its node now."""
        super().handle_work_horse_killed(job, retpid, ret_val, rusage)  # type: ignore[no-untyped-call]
        if ret_val is None:
            why = f"its work horse overran the {job.timeout} s timeout and was killed"
        else:
            why = f"its work horse died ({how_it_ended(os.waitstatus_to_exitcode(ret_val))})"
        try:
            abandoned(job, f"worker lost: {why}")
        except Exception:  # the lease path settles it later
            log.exception("settling %s after its work horse died", job.id)


class LeasedSimpleWorker(_Leased, SimpleWorker):
    """RQ's ``SimpleWorker`` with dagrq leases: a thread renews the lease while a node runs
    (RQ's own SimpleWorker renews it only when a job starts)."""

    def __init__(self, *args: Any, lease_s: int = DEFAULT_LEASE_S, **kwargs: Any) -> None:
        super().__init__(*args, lease_s=lease_s, **kwargs)
        self._running: tuple[Any, Any] | None = None
        self._renewer: threading.Thread | None = None
        self._stop_target: str | None = None
        self._interrupted = False  # the running job was already stopped once

    def execute_job(self, job: Any, queue: Any) -> None:
        """Run ``job`` in this process while the renewal thread keeps its lease.

        The stop signal is let through only while the job runs; a stop asked for another job
        (or arriving late) is ignored, so it can never hit the worker's own loop."""
        self._started(job, hard_deadline(job.timeout))
        execution = self.prepare_execution(job)
        if self._renewer is None:
            signal.signal(STOP_SIGNAL, self._on_stop_signal)
            self._renewer = threading.Thread(target=self._renew, name="dagrq-lease", daemon=True)
            self._renewer.start()
        self._running = (job, execution)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {STOP_SIGNAL})
        try:
            self.perform_job(job, queue, execution)
        except NodeStopped:
            pass  # arrived between the job's end and the mask: the job had ended anyway
        finally:
            signal.pthread_sigmask(signal.SIG_BLOCK, {STOP_SIGNAL})
            self._running, self._stop_target, self._interrupted = None, None, False
            self._ended()
            HAND.holding = False
        self.set_state(WorkerStatus.IDLE)

    def _finalize_success(self, *args: Any) -> None:
        """RQ's bookkeeping of a job that returned, with a cancel's stop held off: the body
        has ended, and a stop landing in RQ's transaction would record it failed."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {STOP_SIGNAL})
        super()._finalize_success(*args)

    def _finalize_failure(self, *args: Any) -> None:
        """RQ's bookkeeping of a job that raised, with a second stop held off."""
        signal.pthread_sigmask(signal.SIG_BLOCK, {STOP_SIGNAL})
        super()._finalize_failure(*args)

    def kill_horse(self, sig: Any = None) -> None:
        """Stop the node running in this process (RQ's stop-job command, which names the job
        in ``_stopped_job_id``): :class:`NodeStopped` is raised inside it."""
        running = self._running
        if running is not None:
            self._stop(self._stopped_job_id or running[0].id)

    def _stop(self, job_id: str) -> None:
        """Raise :class:`NodeStopped` in the main thread if, and only if, ``job_id`` is what
        runs there when the signal lands (a stop meant for a job that has ended meanwhile must
        not hit the next one) and nothing stopped it yet."""
        self._stop_target = job_id
        signal.pthread_kill(threading.main_thread().ident or 0, STOP_SIGNAL)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        running = self._running
        if running is not None and self._stop_target == running[0].id and not self._interrupted:
            # once per job: a second stop (RQ's command and a lease renewal both ask) landing
            # in RQ's handling of the first would leave the job ``started`` until its lease ends
            self._stop_target, self._interrupted = None, True
            self._stopped_job_id = running[0].id  # RQ records the job stopped, not failed
            raise NodeStopped(f"job {running[0].id} was stopped: its run was canceled")

    def _renew(self) -> None:
        while True:
            time.sleep(self.job_monitoring_interval)
            running = self._running
            if running is None:
                continue
            try:  # first, and whatever the renewal does: a canceled run's node stops
                if self._canceled(running[0]):
                    self._stop(running[0].id)
                    continue
            except Exception:
                log.exception("checking whether the run of %s was canceled", running[0].id)
            try:  # a renewal racing the job's end only re-adds an entry clean-up ignores
                self.maintain_heartbeats(*running)
            except Exception:  # a missed renewal is retried next tick
                log.exception("renewing the lease of %s", running[0].id)


#: the signal that interrupts a node running in a SimpleWorker's main thread
STOP_SIGNAL = signal.SIGUSR1


def make_worker(
    dags: Iterable[DAG],
    connection: Any,
    queue_names: Iterable[str] | None = None,
    name: str | None = None,
    *,
    fork: bool = True,
    lease_s: int = DEFAULT_LEASE_S,
    report: Report | None = None,
) -> BaseWorker:
    """An RQ worker that runs the nodes of ``dags`` and nothing else.

    Args:
        dags: the DAGs to serve (validated here).
        connection: a ``redis.Redis``.
        queue_names: the queues to listen on (default: every queue of every DAG).
        name: the RQ worker name (default: RQ's).
        fork: ``True`` is RQ's ``Worker`` (a fresh work-horse process per job: isolation, a
            hard kill on timeout); ``False`` is RQ's ``SimpleWorker`` (jobs run in the
            worker process: several times faster per job, but a crashing or leaking node
            affects the worker).
        lease_s: a node whose worker sends no heartbeat for this long is presumed lost, and
            retried or failed by its rule (see :mod:`dagrq.lease`).
        report: told of every job's start and end (see :data:`Report`).
    """
    dags = list(dags)
    serve(*dags)
    ClaimingQueue.shortcut = kept  # a cached node's hit settles at its claim
    ride_out_outages(2 * lease_s)  # a Redis outage shorter than a lease costs a node nothing
    worker_class = LeasedWorker if fork else LeasedSimpleWorker
    return worker_class(
        rq_queues(dags, queue_names),  # RQ makes each a ClaimingQueue with our job class
        connection=connection,
        name=name,
        serializer=rqjobs.SERIALIZER,
        job_class=rqjobs.DagrqJob,
        lease_s=lease_s,
        report=report,
        serves={d.name: d.plan_hash for d in dags},
    )


def rq_queues(dags: Iterable[DAG], queue_names: Iterable[str] | None = None) -> list[str]:
    """The RQ queues a worker of ``dags`` listens on: each DAG's queues (or those of them
    named in ``queue_names``) of the version it has loaded."""
    wanted = set(queue_names or ())
    return list(
        dict.fromkeys(
            dag.plan.rq_queue(q) for dag in dags for q in dag.queues if not wanted or q in wanted
        )
    )
