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

from rq import SimpleWorker, Worker
from rq.worker import BaseWorker, WorkerStatus

from . import rqjobs
from .dag import DAG
from .lease import abandoned
from .runtime import serve

log = logging.getLogger(__name__)

#: default seconds without a heartbeat after which a running node's worker is presumed lost
DEFAULT_LEASE_S = 60


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

    def get_heartbeat_ttl(self, job: Any, working_time: float = 0.0) -> int:
        """The lease: three renewal intervals (the horse process computes it alike)."""
        return 3 * int(self.job_monitoring_interval)

    @property
    def dequeue_timeout(self) -> int:
        """An idle worker wakes this often to clean registries (RQ's default is 405 s)."""
        return max(1, int(self.maintenance_interval))


class LeasedWorker(_Leased, Worker):
    """RQ's forking ``Worker`` with dagrq leases; a dead work horse is settled at once."""

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

    def execute_job(self, job: Any, queue: Any) -> None:
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
        rqjobs.queues(names, connection),
        connection=connection,
        name=name,
        serializer=rqjobs.SERIALIZER,
        job_class=rqjobs.DagrqJob,
        lease_s=lease_s,
    )


def worker_argv(pipeline: str, url: str, *extra: str) -> list[str]:
    """The command line of one ``dagrq worker`` for ``pipeline`` on ``url``."""
    return [sys.executable, "-m", "dagrq", "worker", pipeline, "--url", url, *extra]


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
