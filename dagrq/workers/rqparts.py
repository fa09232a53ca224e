"""The parts of RQ a dagrq worker runs its own way: the dequeue that never loses a job
(:class:`ClaimingQueue`, and :data:`HAND`, what this process holds), and RQ's scheduler in a
process that dies with its worker (:class:`Scheduler`). The worker classes that use them are
:mod:`dagrq.workers.leased`'s."""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import select
import signal
import time
from typing import Any

from rq import Queue
from rq.exceptions import DequeueTimeout, StopRequested
from rq.scheduler import RQScheduler
from rq.scheduler import run as run_scheduler

from ..model.node import one_line_error
from ..store import keys, rqjobs, scripts
from .processes import die_with

log = logging.getLogger(__name__)

#: seconds an idle worker blocks on its queues' doorbells before it looks at its queues
#: anyway (RQ's own requeues, a retry say, ring no bell)
WAKE_S = 1.0


class Scheduler(RQScheduler):
    """RQ's scheduler (it moves retries whose backoff has passed back onto their queues), in
    a process that dies with the worker process that started it: a SIGKILLed worker leaves no
    scheduler behind holding its locks; and one that stops as soon as it is asked (RQ's
    sleeps out its interval first, and its worker waits for it: a second per worker stop)."""

    def start(self) -> Any:
        """RQ's start: the scheduler loop in a forked process, here one that dies with us."""
        self._status = self.Status.STARTED
        self._connection = None  # RQ's own step: a connection does not cross a fork
        process = _FORK.Process(target=_schedule, args=(self, os.getpid()), name="Scheduler")
        process.start()
        self._process = process  # type: ignore[assignment]
        return process

    def work(self) -> None:
        """RQ's loop, its sleep cut short by a stop request (a pipe the signal writes to)."""
        wake_r, wake_w = os.pipe()
        os.set_blocking(wake_w, False)

        def stop(signum: int, frame: Any) -> None:
            self._stop_requested = True
            with contextlib.suppress(OSError):
                os.write(wake_w, b"x")

        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, stop)
        self.register_birth()
        while not self._stop_requested:
            if self.should_reacquire_locks:
                self.acquire_locks()  # type: ignore[no-untyped-call]
            self.heartbeat()  # type: ignore[no-untyped-call]
            self.enqueue_scheduled_jobs()  # type: ignore[no-untyped-call]
            select.select([wake_r], [], [], self.interval)
        self.stop()  # type: ignore[no-untyped-call]


def _kept(shortcut: Any, job: Any) -> bool:
    """Whether ``shortcut`` settled ``job``; any error leaves the job to RQ (it runs as usual,
    and a failure there is reported as any other)."""
    try:
        return bool(shortcut(job))
    except Exception as exc:
        log.warning("cache check of %s failed, running it: %s", job.id, one_line_error(exc))
        return False


def _schedule(scheduler: RQScheduler, parent: int) -> None:
    die_with(parent)
    run_scheduler(scheduler)  # type: ignore[no-untyped-call]


_FORK = multiprocessing.get_context("fork")


class _Hand:
    """Whether this process holds a job: from its claim until RQ's bookkeeping of its end is
    done. A stop request (SIGTERM, SIGINT) arriving then is noted, and honoured after it
    (:meth:`_Leased._shutdown`), or at once when the claim found nothing."""

    holding = False
    stop_noted = False


#: this process's hand (one worker per process)
HAND = _Hand()


class ClaimingQueue(Queue):
    """RQ's queue with a dequeue that never loses a job.

    RQ takes a job from several queues with ``BLPOP``: a worker that dies before recording the
    start leaves the job in no list and no registry. Here a job is claimed with
    ``claim.lua``, which moves it into its queue's intermediate list in the same step, and an
    idle worker blocks on its queues' doorbells instead. Garbage on a queue (an id that is not
    text, a job hash that cannot be read) is rejected (:func:`dagrq.store.rqjobs.reject`), never
    raised: it cannot stop a worker.
    """

    #: settles a claimed job without RQ running it (a cache hit), True when done; set by the
    #: worker (:func:`dagrq.jobs.entry.kept`): a hit costs no execution, no body, no horse
    shortcut: Any = None

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
            HAND.holding = True  # from the claim on, a stop waits for the job's end
            claimed = found = None
            due = WAKE_S  # a rate limit's line due sooner wakes this worker sooner
            try:
                got = scripts.claim(connection, queue_keys)
                if isinstance(got, float):
                    due = min(WAKE_S, got)
                elif got is not None:
                    claimed = got
                    found = cls._fetch_claimed(
                        connection, *got, job_class, serializer, death_penalty_class
                    )
                if found is not None and cls.shortcut is not None and _kept(cls.shortcut, found[0]):
                    claimed, found = None, None  # settled from the cache: claim the next
                    continue
            finally:
                HAND.holding = found is not None
            if found is not None:
                return found
            if HAND.stop_noted:  # asked to stop while claiming nothing: not after a wait
                raise StopRequested()
            if claimed is not None:
                continue  # garbage, rejected: look again
            if deadline is None:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise DequeueTimeout(timeout, queue_keys)
            connection.blpop(bells, timeout=min(due, left))

    def move_dependents_to_ready(
        self,
        job: Any,
        pipeline: Any = None,
        exclude_job_id: str | None = None,
        refresh_job_status: bool = True,
    ) -> dict[str, list[str]]:
        """Nothing: a dagrq job has no RQ dependents (dagrq fires a node's children itself),
        so RQ's read of them after every job is saved."""
        return {}

    @classmethod
    def _fetch_claimed(
        cls,
        connection: Any,
        queue_key: str,
        raw_id: bytes,
        fields: dict[bytes, bytes],
        job_class: Any,
        serializer: Any,
        death_penalty_class: Any,
    ) -> tuple[Any, Queue] | None:
        """The claimed job (from the hash ``claim.lua`` read with it) and its queue; None
        (the claim undone) for a job that is gone or garbage."""
        queue_name = queue_key.removeprefix(keys.RQ_QUEUE_PREFIX)
        try:
            job_id = raw_id.decode()
        except UnicodeDecodeError:
            rqjobs.reject(connection, queue_name, raw_id, "the job id is not text")
            return None
        if not fields:  # the job hash is gone: nothing to run
            connection.lrem(keys.intermediate_key(queue_name), 1, raw_id)
            return None
        peek = {k[1:].decode(): v for k, v in fields.items() if k[:1] == b"~"}
        if peek:  # a cached node's: what its cache check reads (claim.lua's peek_into)
            fields = {k: v for k, v in fields.items() if k[:1] != b"~"}
        try:
            job = job_class(job_id, connection=connection, serializer=serializer)
            job.restore(fields)
            job.dagrq_peek = peek or None
            _ = job.func_name  # read the payload now (RQ reads it lazily, later)
        except Exception as exc:
            reason = f"dagrq refused job {job_id}: it cannot be read ({one_line_error(exc)})"
            log.warning("%s", reason)
            rqjobs.reject(connection, queue_name, raw_id, reason)
            return None
        queue = cls.from_queue_key(
            queue_key,
            connection=connection,
            job_class=job_class,
            serializer=serializer,
            death_penalty_class=death_penalty_class,
        )
        return job, queue
