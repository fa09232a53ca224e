"""The RQ adapter: the only module (with the worker classes) that touches RQ's Python API.

Every dagrq RQ job names one callable, :data:`dagrq.keys.ENTRYPOINT`, with JSON arguments
``(dag, run, node[, chunk | item])``, and one failure callback, :data:`dagrq.keys.ON_FAILURE`.
Its fields are laid out once here (:func:`_job_options`), for a node's job created at submit
and for the item and chunk jobs of a mapped node. :class:`DagrqJob` runs nothing else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from rq import Callback, Queue, get_current_job
from rq import Retry as RQRetry
from rq.command import send_stop_job_command
from rq.exceptions import AbandonedJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException

from . import keys
from .errors import NodeRefused
from .options import Retry
from .plan import NodeSpec, Plan

__all__ = [
    "SERIALIZER",
    "AbandonedJobError",
    "DagrqJob",
    "Job",
    "JobTimeoutException",
    "cancel_jobs",
    "create_node_jobs",
    "current_job",
    "enqueue_item_jobs",
    "fetch_job",
    "forget_failures",
    "queue",
    "queues",
    "stop_jobs",
]

log = logging.getLogger(__name__)

#: RQ's serializer for dagrq job payloads: JSON, so no worker unpickles what it reads
SERIALIZER = JSONSerializer

#: an item job of a mapped node: a chunk of items, or one item retried on its own
ItemJob = tuple[Literal["chunk", "item"], int]


class DagrqJob(Job):
    """An RQ job that runs only dagrq's entry point, and only dagrq's failure callback."""

    @property
    def failure_callback(self) -> Any:
        """dagrq's :func:`~dagrq.lease.on_failure`; any other name in Redis is ignored."""
        if self._failure_callback_name not in (None, keys.ON_FAILURE):
            log.warning(
                "job %s names failure callback %r: ignored", self.id, self._failure_callback_name
            )
            return None
        return super().failure_callback

    @property
    def success_callback(self) -> Any:
        """None: dagrq jobs have no success callback (one named in Redis is ignored)."""
        return None

    @property
    def stopped_callback(self) -> Any:
        """None: dagrq jobs have no stopped callback (one named in Redis is ignored)."""
        return None

    def _execute(self) -> Any:
        if self.func_name != keys.ENTRYPOINT:
            raise NodeRefused(
                f"job {self.id} names {self.func_name!r}; a dagrq worker runs only "
                f"{keys.ENTRYPOINT}; run this job on a plain rq worker"
            )
        return super()._execute()


def queue(name: str, connection: Any) -> Queue:
    """The RQ queue ``name`` with dagrq's serializer and job class."""
    return Queue(name, connection=connection, serializer=SERIALIZER, job_class=DagrqJob)


def queues(names: Iterable[str], connection: Any) -> list[Queue]:
    """:func:`queue` for each name, in order, without repeats."""
    return [queue(name, connection) for name in dict.fromkeys(names)]


def current_job() -> Job:
    """The RQ job this process is running (the entry point runs only inside one)."""
    job = get_current_job()
    assert job is not None, "dagrq's entry point runs inside an RQ job"
    return job


def fetch_job(job_id: str, connection: Any) -> DagrqJob:
    """RQ's job ``job_id``, with dagrq's serializer.

    Raises:
        NoSuchJobError: RQ has no such job.
    """
    job = DagrqJob.fetch(job_id, connection=connection, serializer=SERIALIZER)
    assert isinstance(job, DagrqJob)
    return job


def _rq_retry(retry: Retry | None) -> RQRetry | None:
    """RQ's ``Retry`` for a node's ``retry=`` (None for no retries)."""
    if retry is None or retry.max <= 0:
        return None
    return RQRetry(max=retry.max, interval=list(retry.backoff))


def _job_options(
    dag: str,
    ttl_s: int,
    run_id: str,
    spec: NodeSpec,
    item: ItemJob | None = None,
    retry: Retry | None = None,
) -> dict[str, Any]:
    """The fields of one dagrq job: a node's own job, or (``item``) one chunk or item job of a
    mapped node, whose ``retry`` is given by the caller (a chunk retries item by item)."""
    kwargs: dict[str, Any] = {"dag": dag, "run": run_id, "node": spec.name}
    job_id, description = keys.job_id(run_id, spec.name), f"{dag}.{spec.name}[{run_id}]"
    timeout, result_ttl = spec.timeout or -1, spec.result_ttl
    if item is not None:
        kind, n = item
        kwargs[kind] = n
        make_id = keys.chunk_job_id if kind == "chunk" else keys.item_job_id
        job_id, description = make_id(run_id, spec.name, n), f"{description} {kind} {n}"
        timeout = spec.timeout * spec.chunk if spec.timeout and kind == "chunk" else timeout
        result_ttl = 1  # an item's result lives in dagrq's hash; RQ's copy expires at once
    else:
        retry = spec.retry
    return {
        "func": keys.ENTRYPOINT,
        "kwargs": kwargs,
        "job_id": job_id,
        "description": description,
        "timeout": timeout,
        "retry": _rq_retry(retry),
        "result_ttl": result_ttl,
        "failure_ttl": ttl_s,
        "ttl": ttl_s,
        "on_failure": Callback(keys.ON_FAILURE),
    }


def create_node_jobs(
    connection: Any, pipe: Any, plan: Plan, run_id: str, specs: Sequence[NodeSpec]
) -> None:
    """Create the RQ jobs of ``specs`` on ``pipe`` (in MULTI): nodes without parents are
    enqueued; the others are saved ``deferred`` for ``complete.lua`` to fire."""
    for spec in specs:
        options = _job_options(plan.dag, plan.ttl_s, run_id, spec)
        job = Job.create(
            options.pop("func"),
            id=options.pop("job_id"),
            connection=connection,
            origin=spec.queue_name,
            serializer=SERIALIZER,
            status=JobStatus.DEFERRED if spec.parents else None,
            **options,
        )
        if spec.parents:
            job.save(pipeline=pipe)
            pipe.expire(job.key, plan.ttl_s)
        else:
            queue(spec.queue_name, connection).enqueue_job(job, pipeline=pipe)
    for spec in specs:
        pipe.sadd(Queue.redis_queues_keys, keys.queue_key(spec.queue_name))


def enqueue_item_jobs(
    connection: Any,
    dag: str,
    ttl_s: int,
    run_id: str,
    spec: NodeSpec,
    jobs: Sequence[ItemJob],
    retry: Retry | None,
) -> None:
    """Enqueue item jobs of mapped node ``spec``, ``("chunk", c)`` or ``("item", i)``, in one
    pipelined batch (RQ's ``enqueue_many``); each gets ``retry``."""
    datas = [
        Queue.prepare_data(**_job_options(dag, ttl_s, run_id, spec, item, retry)) for item in jobs
    ]
    with connection.pipeline() as pipe:
        queue(spec.queue_name, connection).enqueue_many(datas, pipeline=pipe)
        pipe.execute()


def cancel_jobs(connection: Any, job_ids: Iterable[str]) -> None:
    """Take queued jobs out of their queues (RQ's cancel); jobs already gone are skipped."""
    for job_id in job_ids:
        with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
            fetch_job(job_id, connection).cancel()


def stop_jobs(connection: Any, job_ids: Iterable[str]) -> None:
    """Ask the workers running these jobs to stop them (RQ's stop-job command)."""
    for job_id in job_ids:
        with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
            send_stop_job_command(connection, job_id, serializer=SERIALIZER)


def forget_failures(connection: Any, pipe: Any, queue_name: str, job_id: str) -> None:
    """Drop ``job_id`` from its queue's failed and canceled registries (on ``pipe``), so a
    resumed node's job is RQ's fresh job again."""
    for registry in (FailedJobRegistry, CanceledJobRegistry):
        registry(queue_name, connection=connection).remove(job_id, pipeline=pipe)
