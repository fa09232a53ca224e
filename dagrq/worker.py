"""Process control: the RQ worker classes that hold leases, and groups of worker processes.

:func:`make_worker` builds the worker ``dagrq worker`` runs: RQ's forking ``Worker`` or its
``SimpleWorker``, listening on the queues of the DAGs it serves, with leases renewed while a
node runs (see :mod:`dagrq.lease`). :class:`Processes` starts and stops a group of
processes (``dagrq worker`` or any other command): ``dagrq run``'s local workers, the test
suite's and the benchmarks' all come from it.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from rq import Queue, SimpleWorker, Worker
from rq.exceptions import DequeueTimeout
from rq.worker import BaseWorker, WorkerStatus

from . import keys, rqjobs, scripts
from .dag import DAG
from .errors import NodeStopped
from .lease import abandoned
from .node import one_line_error
from .reconcile import Reconciler
from .runtime import serve

log = logging.getLogger(__name__)

#: default seconds without a heartbeat after which a running node's worker is presumed lost
DEFAULT_LEASE_S = 60
#: the shortest lease allowed: renewals every second, expiry after six
LEASE_FLOOR_S = 5
#: seconds an idle worker blocks on its queues' doorbells before it looks at its queues
#: anyway (RQ's own requeues, a retry say, ring no bell)
WAKE_S = 1.0


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


def heartbeat_ttl(lease_s: int) -> int:
    """Seconds a renewal keeps a running node's lease alive: the lease plus one renewal
    interval, so that a renewal due during a stall shorter than the lease still finds the
    lease alive and no second attempt can start.

    Examples:
        >>> heartbeat_ttl(60), heartbeat_ttl(5)
        (80, 6)
    """
    return lease_s + lease_settings(lease_s)["job_monitoring_interval"]


class ClaimingQueue(Queue):
    """RQ's queue with a dequeue that never loses a job.

    RQ takes a job from several queues with ``BLPOP``: a worker that dies before recording the
    start leaves the job in no list and no registry. Here a job is claimed with
    ``claim.lua``, which moves it into its queue's intermediate list in the same step, and an
    idle worker blocks on its queues' doorbells instead. Garbage on a queue (an id that is not
    text, a job hash that cannot be read) is rejected (:func:`dagrq.rqjobs.reject`), never
    raised: it cannot stop a worker.
    """

    @classmethod
    def dequeue_any(
        cls,
        queues: Any,
        timeout: int | None,
        connection: Any,
        job_class: Any = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Any, Queue] | None:
        """The next job on ``queues`` (claimed), blocking up to ``timeout`` seconds.

        Raises:
            DequeueTimeout: nothing came within ``timeout``.
        """
        queue_keys = [q.key for q in queues]
        bells = [keys.doorbell_key(q.name) for q in queues]
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            claimed = scripts.claim(connection, queue_keys)
            if claimed is not None:
                found = cls._fetch_claimed(
                    connection, *claimed, job_class, serializer, death_penalty_class
                )
                if found is not None:
                    return found
                continue
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, queue_keys)
            connection.blpop(bells, timeout=min(WAKE_S, left))

    @classmethod
    def _fetch_claimed(
        cls,
        connection: Any,
        queue_key: str,
        raw_id: bytes,
        job_class: Any,
        serializer: Any,
        death_penalty_class: Any,
    ) -> tuple[Any, Queue] | None:
        """The claimed job and its queue; None (the claim undone) for a job that is gone or
        garbage."""
        queue_name = queue_key.removeprefix(keys.RQ_QUEUE_PREFIX)
        try:
            job_id = raw_id.decode()
        except UnicodeDecodeError:
            rqjobs.reject(connection, queue_name, raw_id, "the job id is not text")
            return None
        try:
            found = cls._fetch_dequeued_job(
                connection, queue_key, job_id, job_class, serializer, death_penalty_class
            )
            if found is not None:
                _ = found[0].func_name  # read the payload now (RQ reads it lazily, later)
        except Exception as exc:
            reason = f"dagrq refused job {job_id}: it cannot be read ({one_line_error(exc)})"
            log.warning("%s", reason)
            rqjobs.reject(connection, queue_name, raw_id, reason)
            return None
        if found is None:  # the job hash is gone: nothing to run
            connection.lrem(keys.intermediate_key(queue_name), 1, raw_id)
        return found


class _Leased:
    """Leases, the claiming dequeue and cancellation checks shared by both worker classes
    (mixed in before RQ's class)."""

    job_monitoring_interval: int
    maintenance_interval: int
    connection: Any
    _stopped_job_id: str | None

    def __init__(self, *args: Any, lease_s: int = DEFAULT_LEASE_S, **kwargs: Any) -> None:
        self.lease_s = lease_s
        self.stop_asked = False
        kwargs.setdefault("queue_class", ClaimingQueue)
        super().__init__(*args, **{**lease_settings(lease_s), **kwargs})

    def request_stop(self, signum: Any, frame: Any) -> None:
        """SIGTERM/SIGINT: RQ's warm shutdown, remembered so the worker does not restart."""
        self.stop_asked = True
        super().request_stop(signum, frame)  # type: ignore[misc]

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
        run = (getattr(job, "kwargs", None) or {}).get("run")
        if not isinstance(run, str):
            return False
        state = self.connection.hget(keys.run_key(run), "state")
        return state is not None and state != b"running"


class LeasedWorker(_Leased, Worker):
    """RQ's forking ``Worker`` with dagrq leases; a dead work horse is settled at once."""

    def maintain_heartbeats(self, job: Any, execution: Any) -> None:
        """Renew the lease; stop the work horse when the node's run was canceled."""
        super().maintain_heartbeats(job, execution)
        if self._canceled(job):
            self._stopped_job_id = job.id
            self.kill_horse()

    def handle_work_horse_killed(self, job: Any, retpid: int, ret_val: int, rusage: Any) -> None:
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
        self._running: tuple[Any, Any] | None = None
        self._renewer: threading.Thread | None = None
        self._stop_target: str | None = None

    def execute_job(self, job: Any, queue: Any) -> None:
        """Run ``job`` in this process while the renewal thread keeps its lease.

        The stop signal is let through only while the job runs; a stop asked for another job
        (or arriving late) is ignored, so it can never hit the worker's own loop."""
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
            self._running, self._stop_target = None, None
        self.set_state(WorkerStatus.IDLE)

    def kill_horse(self, sig: Any = None) -> None:
        """Stop the node running in this process (RQ's stop-job command, which names the job
        in ``_stopped_job_id``): :class:`NodeStopped` is raised inside it."""
        running = self._running
        if running is not None:
            self._stop(self._stopped_job_id or running[0].id)

    def _stop(self, job_id: str) -> None:
        """Raise :class:`NodeStopped` in the main thread if, and only if, ``job_id`` is what
        runs there when the signal lands (a stop meant for a job that has ended meanwhile must
        not hit the next one)."""
        self._stop_target = job_id
        signal.pthread_kill(threading.main_thread().ident or 0, STOP_SIGNAL)

    def _on_stop_signal(self, signum: int, frame: Any) -> None:
        running = self._running
        if running is not None and self._stop_target == running[0].id:
            self._stop_target = None
            self._stopped_job_id = running[0].id  # RQ records the job stopped, not failed
            raise NodeStopped(f"job {running[0].id} was stopped: its run was canceled")

    def _renew(self) -> None:
        while True:
            time.sleep(self.job_monitoring_interval)
            running = self._running
            if running is None:
                continue
            try:  # a renewal racing the job's end only re-adds an entry clean-up ignores
                self.maintain_heartbeats(*running)
                if self._canceled(running[0]):
                    self._stop(running[0].id)
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
    """
    dags = list(dags)
    serve(*dags)
    wanted = list(queue_names or [])
    names = wanted or [q for dag in dags for q in dag.queues]
    worker_class = LeasedWorker if fork else LeasedSimpleWorker
    return worker_class(
        list(dict.fromkeys(names)),  # RQ makes each a ClaimingQueue with our job class
        connection=connection,
        name=name,
        serializer=rqjobs.SERIALIZER,
        job_class=rqjobs.DagrqJob,
        lease_s=lease_s,
    )


def worker_argv(pipeline: str, *extra: str) -> list[str]:
    """The command line of one ``dagrq worker`` for ``pipeline``. The Redis URL is not on it
    (a command line is visible to every user of the machine): give it as ``DAGRQ_URL`` in the
    environment (:meth:`Processes` ``env``)."""
    return [sys.executable, "-m", "dagrq", "worker", pipeline, *extra]


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
) -> None:
    """Run a dagrq worker until it is asked to stop, riding out Redis outages.

    Waits for Redis to answer (with backoff) before the first job and after every outage: a
    restart, a failover or a pause ends RQ's work loop, and a new one starts once Redis is
    back. A node whose lease lapsed meanwhile is settled as any lost node. Warns once when
    the server persists nothing. ``where`` names the server in logs (password masked).
    """
    stop = _Stop()
    warned = False
    reconciling: ReconcileThread | None = None
    while not stop.asked:
        if not wait_for_redis(connection, where, stop):
            return
        if not warned:
            warn_if_volatile(connection, where)
            warned = True
        if reconciling is None and not burst:
            reconciling = ReconcileThread(connection, dags, lease_s)
            reconciling.start()
        worker = None
        try:
            worker = make_worker(dags, connection, queue_names, name, fork=fork, lease_s=lease_s)
            worker.work(burst=burst, with_scheduler=True, logging_level=logging_level)
        except Exception as exc:  # Redis went away under RQ's loop (its teardown raises)
            log.warning("worker loop stopped: %s", one_line_error(exc))
        stop.asked = stop.asked or burst or getattr(worker, "stop_asked", False)
        stop.install()  # RQ's handlers are gone with its loop: SIGTERM must still stop us
        if not stop.asked:
            log.warning("worker loop ended without a stop request; starting it again")
            time.sleep(0.5)


class ReconcileThread(threading.Thread):
    """Runs the reconciler (:mod:`dagrq.reconcile`) every sixth of the lease, in one process
    of all the workers at a time (a lock that expires by itself within one interval, so a
    dead holder delays nothing)."""

    def __init__(self, connection: Any, dags: Sequence[DAG], lease_s: int) -> None:
        super().__init__(name="dagrq-reconcile", daemon=True)
        self.interval_s = max(1.0, lease_s / 6)
        self.reconciler = Reconciler(
            connection,
            grace_s=max(2.0, self.interval_s),
            lease_margin_s=self.interval_s,
            served={d.name: d for d in dags},
        )
        self.connection = connection

    def run(self) -> None:
        """Every interval: take the lock if free, then reconcile every active run."""
        lock = keys.reconcile_lock_key()
        hold_ms = int(self.interval_s * 900)
        while True:
            time.sleep(self.interval_s)
            try:
                if self.connection.set(lock, os.getpid(), nx=True, px=hold_ms):
                    self.reconciler.pass_()
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


class Processes:
    """A group of processes started together and stopped together (a context manager).

    Args:
        log_dir: where each process's output goes (``<log_name>-<n>.log``); without it,
            output is discarded.
        env: extra environment for every process.
        cwd: their working directory.
    """

    def __init__(
        self,
        log_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.log_dir, self.cwd = log_dir, cwd
        self.env = {**os.environ, **(env or {})}
        self.procs: list[tuple[subprocess.Popen[bytes], Path | None]] = []

    def start(
        self, argv: Sequence[str], n: int = 1, log_name: str = "worker"
    ) -> list[subprocess.Popen[bytes]]:
        """Start ``n`` processes running ``argv``; return them."""
        started = []
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            log_path = None
            if self.log_dir is not None:
                log_path = self.log_dir / f"{log_name}-{len(self.procs)}.log"
            with open(log_path or os.devnull, "ab") as out:
                proc = subprocess.Popen(
                    list(argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.cwd,
                )
            self.procs.append((proc, log_path))
            started.append(proc)
        return started

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every process still running (a warm shutdown: RQ finishes the job at
        hand), then SIGKILL what has not exited after ``grace_s`` seconds."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        """Every process's output so far, each under its file name."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}"
            for _, path in self.procs
            if path is not None and path.exists()
        )

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
