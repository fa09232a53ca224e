"""The RQ adapter: the only module (with the worker classes) that touches RQ's Python API.

Every dagrq RQ job names one callable, :data:`dagrq.store.keys.ENTRYPOINT`, with JSON arguments
``(dag, run, node[, chunk | item])``, and one failure callback, :data:`dagrq.store.keys.ON_FAILURE`.
Its fields are laid out once here (:func:`_job_options`), for a node's job created at submit
and for the item and chunk jobs of a mapped node. :class:`DagrqJob` runs nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any, Literal

from redis.exceptions import NoPermissionError
from rq import Callback, Queue, Worker, get_current_job
from rq import Retry as RQRetry
from rq.command import send_stop_execution_command, send_stop_job_command
from rq.defaults import DEFAULT_FAILURE_TTL
from rq.exceptions import AbandonedJobError, InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.job_lifecycle import record_job_failure
from rq.registry import (
    CanceledJobRegistry,
    FailedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.utils import now as rq_now
from rq.utils import utcformat
from rq.worker_registration import WORKERS_BY_QUEUE_KEY

from ..errors import NodeRefused
from ..model.jobref import JobRef
from ..model.options import Retry
from ..model.plan import NodeSpec, Plan
from . import keys

__all__ = [
    "SERIALIZER",
    "AbandonedJobError",
    "DagrqJob",
    "Job",
    "JobTimeoutException",
    "NoSuchJobError",
    "cancel_jobs",
    "close_lost",
    "create_node_jobs",
    "current_job",
    "enqueue_item_jobs",
    "executions",
    "failure_text",
    "fetch_job",
    "forget_failures",
    "forget_worker",
    "home_keys",
    "job_fields",
    "lease_members",
    "leases",
    "listeners",
    "put_back",
    "queue",
    "ref_of",
    "register_queues",
    "reject",
    "ring",
    "scheduled",
    "settle_lost",
    "sign",
    "signature_ok",
    "started_at",
    "started_key",
    "still_executing",
    "still_started",
    "stop_executions",
    "stop_jobs",
    "workers",
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


#: the environment variable holding the key dagrq signs its jobs with (optional)
SECRET_ENV = "DAGRQ_SECRET"


def sign(ref: JobRef) -> str | None:
    """The HMAC-SHA256 of a job's identity (``dag``, ``run``, ``node``, ``chunk``, ``item``)
    with ``$DAGRQ_SECRET``, or None when no secret is set. A worker that has the secret refuses
    a job without the right signature, so a Redis writer without the key cannot forge a node
    job.

    Examples:
        >>> import os; os.environ["DAGRQ_SECRET"] = "k"
        >>> a = sign(JobRef("d", "r", "n"))
        >>> a == sign(JobRef("d", "r", "n", sig="ignored")) and len(a) == 64
        True
        >>> del os.environ["DAGRQ_SECRET"]; sign(JobRef("d", "r", "n")) is None
        True
    """
    secret = os.environ.get(SECRET_ENV)
    if not secret:
        return None
    text = json.dumps(ref.signed(), sort_keys=True).encode()
    return hmac.new(secret.encode(), text, hashlib.sha256).hexdigest()


def signature_ok(ref: JobRef) -> bool:
    """True when no secret is set, or the job's ``sig`` is the one :func:`sign` gives."""
    expected = sign(ref)
    return expected is None or hmac.compare_digest(ref.sig or "", expected)


def ref_of(job: Job) -> JobRef:
    """The dagrq identity of ``job``, parsed from its keyword arguments.

    Raises:
        ValueError: the job was not made by dagrq.
    """
    return JobRef.parse(job.kwargs)


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
    timeout, result_ttl = spec.timeout or -1, max(spec.result_ttl, ttl_s if spec.parks else 0)
    if item is not None:
        kind, n = item
        kwargs[kind] = n
        make_id = keys.chunk_job_id if kind == "chunk" else keys.item_job_id
        job_id, description = make_id(run_id, spec.name, n), f"{description} {kind} {n}"
        timeout = spec.timeout * spec.chunk if spec.timeout and kind == "chunk" else timeout
        result_ttl = 1  # an item's result lives in dagrq's hash; RQ's copy expires at once
    else:
        retry = spec.retry
    signature = sign(JobRef.parse(kwargs))
    if signature is not None:
        kwargs["sig"] = signature
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
    connection: Any,
    pipe: Any,
    plan: Plan,
    run_id: str,
    specs: Sequence[NodeSpec],
    *,
    fields: Mapping[str, Mapping[str, str]] | None = None,
    held: Collection[str] = (),
) -> None:
    """Create the RQ jobs of ``specs`` on ``pipe`` (in MULTI), on their queues of ``plan``'s
    version: nodes that start at submit (roots, ``always``) are enqueued, unless ``held``
    (``admit.lua`` pushes them, or a timer: a delayed root); the others are saved ``deferred``
    for ``complete.lua`` to fire. ``fields``: per node, fields of its job hash that
    ``claim.lua`` reads with the job (a limited node's gate, a cached node's peek)."""
    for spec in specs:
        enqueue = spec.starts_at_submit and spec.name not in held
        extra = (fields or {}).get(spec.name)
        _create_node_job(connection, pipe, plan, run_id, spec, enqueue=enqueue, extra=extra)
    register_queues(pipe, {plan.rq_queue(spec.queue_name) for spec in specs})


def enqueue_node_job(
    connection: Any, plan: Plan, run_id: str, spec: NodeSpec, extra: Mapping[str, str]
) -> None:
    """Make and enqueue ``spec``'s own job in ``run_id`` again, with its whole ``retry=`` and
    its ``extra`` fields: the reconciler's repair of a job whose hash was lost with a primary."""
    with connection.pipeline() as pipe:
        pipe.multi()
        _create_node_job(connection, pipe, plan, run_id, spec, enqueue=True, extra=extra)
        pipe.execute()


def _create_node_job(
    connection: Any, pipe: Any, plan: Plan, run_id: str, spec: NodeSpec, *, enqueue: bool,
    extra: Mapping[str, str] | None = None,
) -> None:  # fmt: skip
    """On ``pipe`` (in MULTI): ``spec``'s own job, enqueued or saved ``deferred``, with the
    ``extra`` fields a claim reads with it (written before the push)."""
    options = _job_options(plan.dag, plan.ttl_s, run_id, spec)
    rq_queue = plan.rq_queue(spec.queue_name)
    job = Job.create(
        options.pop("func"),
        id=options.pop("job_id"),
        connection=connection,
        origin=rq_queue,
        serializer=SERIALIZER,
        status=None if enqueue else JobStatus.DEFERRED,
        **options,
    )
    if extra:
        pipe.hset(job.key, mapping=dict(extra))
    if not enqueue:
        job.save(pipeline=pipe)
        pipe.expire(job.key, plan.ttl_s)
    else:
        queue(rq_queue, connection).enqueue_job(job, pipeline=pipe)
        ring(pipe, rq_queue, 1)


def register_queues(pipe: Any, rq_queues: Iterable[str]) -> None:
    """On ``pipe``: list ``rq_queues`` in RQ's set of queues (``rq info`` shows them)."""
    for rq_queue in rq_queues:
        pipe.sadd(Queue.redis_queues_keys, keys.queue_key(rq_queue))


def enqueue_item_jobs(
    connection: Any,
    plan: Plan,
    run_id: str,
    spec: NodeSpec,
    jobs: Sequence[ItemJob],
    retry: Retry | None,
) -> None:
    """Enqueue item jobs of mapped node ``spec``, ``("chunk", c)`` or ``("item", i)``, on its
    queue of ``plan``'s version, in one pipelined batch (RQ's ``enqueue_many``); each gets
    ``retry``."""
    datas = [
        Queue.prepare_data(**_job_options(plan.dag, plan.ttl_s, run_id, spec, item, retry))
        for item in jobs
    ]
    rq_queue = plan.rq_queue(spec.queue_name)
    with connection.pipeline() as pipe:
        queue(rq_queue, connection).enqueue_many(datas, pipeline=pipe)
        ring(pipe, rq_queue, len(datas))
        pipe.execute()


#: tokens a doorbell list keeps at most (each only says "look again")
DOORBELL_MAX = 64


def ring(pipe: Any, queue_name: str, jobs: int) -> None:
    """On ``pipe``: wake up to ``jobs`` workers blocked on ``queue_name``'s doorbell."""
    bell = keys.doorbell_key(queue_name)
    pipe.rpush(bell, *([1] * min(jobs, DOORBELL_MAX)))
    pipe.ltrim(bell, -DOORBELL_MAX, -1)


def cancel_jobs(connection: Any, job_ids: Iterable[str]) -> None:
    """Take queued jobs out of their queues (RQ's cancel); jobs already gone or already
    moving on are skipped (each call is safe to repeat)."""
    for job_id in job_ids:
        with contextlib.suppress(NoSuchJobError, InvalidJobOperation, ValueError):
            fetch_job(job_id, connection).cancel()


def stop_jobs(connection: Any, job_ids: Iterable[str]) -> None:
    """Ask the workers running these jobs to stop them now (RQ's stop-job command over
    pub/sub). Where the Redis user may not publish (an ACL without channel rights) this does
    nothing: a dagrq worker also stops a canceled run's node at its next lease renewal."""
    for job_id in job_ids:
        try:
            send_stop_job_command(connection, job_id, serializer=SERIALIZER)
        except (NoSuchJobError, InvalidJobOperation, ValueError):
            continue
        except NoPermissionError:
            log.warning("no right to PUBLISH stop commands; workers stop %s at a renewal", job_id)
            return


#: one execution of a job in a queue's started registry: ``(queue, "<job id>:<execution id>")``
Execution = tuple[str, str]


def executions(connection: Any, queue_names: Iterable[str], prefix: str) -> list[Execution]:
    """Every execution, in these queues' started registries, of a job whose id starts with
    ``prefix``: running now (one job can run twice at once, say when a claimer thought dead
    was only slow), or whose worker died with it."""
    found: list[Execution] = []
    for name in queue_names:
        found += [(name, m) for m, _ in leases(connection, name) if m.startswith(prefix)]
    return found


def stop_executions(connection: Any, running: Iterable[Execution]) -> None:
    """Ask the worker of each execution to stop it now (RQ's stop-execution command over
    pub/sub, to the worker the execution names), whichever of a job's executions it is. Where
    the Redis user may not publish this does nothing: a dagrq worker also stops a canceled
    run's node at its next lease renewal."""
    for _, member in running:
        job_id, _, execution_id = member.rpartition(":")
        try:
            send_stop_execution_command(connection, job_id, execution_id)
        except (NoSuchJobError, InvalidJobOperation, ValueError):
            continue
        except NoPermissionError:
            log.warning("no right to PUBLISH stop commands; workers stop %s at a renewal", job_id)
            return


def still_executing(connection: Any, running: Sequence[Execution]) -> list[Execution]:
    """Those of ``running`` still in their started registry (one round trip)."""
    with connection.pipeline(transaction=False) as pipe:
        for queue_name, member in running:
            pipe.zscore(started_key(queue_name), member)
        scores = pipe.execute()
    return [e for e, score in zip(running, scores, strict=True) if score is not None]


def still_started(connection: Any, job_ids: Sequence[str]) -> list[str]:
    """Those of ``job_ids`` that RQ still shows ``started`` (one round trip)."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(keys.RQ_JOB_PREFIX + job_id, "status")
        statuses = pipe.execute()
    started = JobStatus.STARTED.value.encode()
    return [j for j, st in zip(job_ids, statuses, strict=True) if st == started]


def forget_failures(connection: Any, pipe: Any, queue_name: str, job_ids: Sequence[str]) -> None:
    """Drop ``job_ids`` from their queue's failed and canceled registries (on ``pipe``), so a
    resumed node's jobs (a map's chunk and item jobs too: a cancel records them stopped) are
    RQ's fresh jobs again, and RQ's failed registry holds only attempts that ended a node."""
    for registry in (FailedJobRegistry, CanceledJobRegistry):
        key = registry(queue_name, connection=connection).key
        for start in range(0, len(job_ids), 1000):
            pipe.zrem(key, *job_ids[start : start + 1000])


def reject(connection: Any, queue_name: str, raw_id: bytes, reason: str) -> None:
    """Take a job a dagrq worker must not run out of ``queue_name``'s intermediate list, and
    say why: a readable id goes to the queue's failed registry with ``reason`` as its error; an
    id that is not text is kept in :func:`dagrq.store.keys.rejected_key` (the last 1,000) instead.
    Nothing of it runs."""
    with connection.pipeline() as pipe:
        pipe.lrem(keys.intermediate_key(queue_name), 1, raw_id)
        try:
            job_id = raw_id.decode()
        except UnicodeDecodeError:
            job_id = None
        if job_id is not None and connection.exists(keys.RQ_JOB_PREFIX + job_id):
            pipe.hset(
                keys.RQ_JOB_PREFIX + job_id,
                mapping={"status": JobStatus.FAILED.value, "exc_info": reason},
            )
            expires = time.time() + DEFAULT_FAILURE_TTL  # RQ's score: when the entry lapses
            pipe.zadd(FailedJobRegistry(queue_name, connection=connection).key, {job_id: expires})
        else:
            pipe.lpush(keys.rejected_key(), f"{queue_name} {raw_id!r}: {reason}")
            pipe.ltrim(keys.rejected_key(), 0, 999)
        pipe.execute()


def job_fields(connection: Any, job_ids: Sequence[str]) -> dict[str, dict[str, str]]:
    """RQ's ``status``, ``origin`` and ``retries_left`` of each job (``{}`` for a job with no
    hash), in one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hmget(keys.RQ_JOB_PREFIX + job_id, "status", "origin", "retries_left")
        rows = pipe.execute()
    out: dict[str, dict[str, str]] = {}
    for job_id, row in zip(job_ids, rows, strict=True):
        names = ("status", "origin", "retries_left")
        out[job_id] = {k: v.decode() for k, v in zip(names, row, strict=True) if v is not None}
    return out


def leases(connection: Any, queue_name: str) -> list[tuple[str, float]]:
    """The started registry of ``queue_name``: ``(job id:execution id, expiry)`` for every
    execution registered (running now, or whose worker died with it)."""
    registry = StartedJobRegistry(queue_name, connection=connection)
    return [
        (m.decode(), float(score))
        for m, score in connection.zrange(registry.key, 0, -1, withscores=True)
    ]


def scheduled(connection: Any, queue_name: str, job_id: str) -> bool:
    """True when ``job_id`` waits in its queue's scheduled registry (a retry's backoff)."""
    key = ScheduledJobRegistry(queue_name, connection=connection).key  # type: ignore[no-untyped-call]
    return connection.zscore(key, job_id) is not None


def home_keys(queue_name: str) -> tuple[tuple[str, str, str, str], tuple[str, str, str, str]]:
    """The keys where a job of ``queue_name`` can wait, as ``rehome.lua`` takes them: as the
    old home (list, intermediate list, scheduled and started registries) and as the new one
    (list, scheduled and started registries, doorbell)."""
    scheduled = str(ScheduledJobRegistry(queue_name, connection=None).key)  # type: ignore[no-untyped-call]
    started = started_key(queue_name)
    as_old = (keys.queue_key(queue_name), keys.intermediate_key(queue_name), scheduled, started)
    as_new = (keys.queue_key(queue_name), scheduled, started, keys.doorbell_key(queue_name))
    return as_old, as_new


def started_key(queue_name: str) -> str:
    """RQ's started registry of ``queue_name`` (execution -> lease expiry)."""
    return str(StartedJobRegistry(queue_name, connection=None).key)


def started_at(connection: Any, job_id: str) -> float | None:
    """When RQ started ``job_id``'s current execution (unix seconds), if it did."""
    raw = connection.hget(keys.RQ_JOB_PREFIX + job_id, "started_at")
    if not raw:
        return None
    from datetime import UTC

    from rq.utils import utcparse

    when = utcparse(raw.decode())
    return float((when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp())


def settle_lost(connection: Any, queue_name: str, job: Any, reason: str) -> None:
    """Settle RQ's side of a job whose worker was lost, as RQ's clean-up would: retried when
    it has retries left, else recorded failed with ``reason``.

    dagrq's side, the node, is :func:`dagrq.lease.abandoned`'s, which must see the retries
    left before this spends one.
    """
    with connection.pipeline() as pipe:
        if job.retries_left and job.retries_left > 0:
            job.retry(queue(queue_name, connection), pipe)
        else:
            record_job_failure(job, reason, pipe)
        pipe.execute()


def close_lost(connection: Any, job: Any, queue_name: str | None = None) -> None:
    """Close RQ's side of a job dagrq settled itself: its worker was lost after dagrq recorded
    what it did (its lease already taken), or (``queue_name``: out of that queue's claim) it
    was a cache hit at its claim. Recorded finished, nothing retried."""
    with connection.pipeline(transaction=False) as pipe:
        if queue_name is not None:
            pipe.lrem(keys.intermediate_key(queue_name), 1, job.id)
        ended = utcformat(rq_now())
        pipe.hset(job.key, mapping={"status": JobStatus.FINISHED.value, "ended_at": ended})
        pipe.execute()


def put_back(connection: Any, queue_name: str, job: Any) -> None:
    """Put ``job``, whose process was stopped by dagrq (a shutdown past its drain time), back
    at the head of ``queue_name`` as queued, spending no retry."""
    with connection.pipeline() as pipe:
        pipe.hset(job.key, "status", JobStatus.QUEUED.value)
        queue(queue_name, connection).push_job_id(job.id, pipeline=pipe, at_front=True)
        ring(pipe, queue_name, 1)
        pipe.execute()


def forget_worker(connection: Any, name: str) -> None:
    """Unregister RQ worker ``name``, whose process died without doing so (RQ's listings would
    show it until its key expired)."""
    key = Worker.redis_worker_namespace_prefix + name
    found = Worker.find_by_key(key, connection=connection, serializer=SERIALIZER)
    if found is not None:
        found.register_death()  # type: ignore[no-untyped-call]


#: what :func:`workers` reads of each RQ worker's registration
WORKER_FIELDS = ("hostname", "pid", "state", "current_job", "last_heartbeat", keys.SERVES_FIELD)


def workers(connection: Any) -> list[dict[str, str]]:
    """Every live RQ worker's registration (name and :data:`WORKER_FIELDS`), in two round
    trips; a dagrq worker's says which DAG versions it serves."""
    names = sorted(m.decode() for m in connection.smembers(Worker.redis_workers_keys))
    with connection.pipeline(transaction=False) as pipe:
        for key in names:
            pipe.hmget(key, *WORKER_FIELDS)
        rows = pipe.execute()
    prefix = Worker.redis_worker_namespace_prefix
    return [
        {
            "name": key.removeprefix(prefix),
            **{f: v.decode() for f, v in zip(WORKER_FIELDS, row, strict=True) if v is not None},
        }
        for key, row in zip(names, rows, strict=True)
        if any(v is not None for v in row)
    ]


def listeners(connection: Any, rq_queues: Sequence[str]) -> dict[str, int]:
    """How many live RQ workers listen on each of ``rq_queues`` (a worker whose registration
    expired no longer counts), in two round trips."""
    with connection.pipeline(transaction=False) as pipe:
        for name in rq_queues:
            pipe.smembers(WORKERS_BY_QUEUE_KEY % name)
        members = [sorted(m) for m in pipe.execute()]
    every = sorted({m for ms in members for m in ms})
    if not every:
        return dict.fromkeys(rq_queues, 0)
    with connection.pipeline(transaction=False) as pipe:
        for key in every:
            pipe.exists(key)
        alive = {k for k, there in zip(every, pipe.execute(), strict=True) if there}
    return {
        name: sum(1 for m in ms if m in alive) for name, ms in zip(rq_queues, members, strict=True)
    }


def lease_members(connection: Any, queue_name: str, job_id: str) -> list[str]:
    """``job_id``'s executions in ``queue_name``'s started registry (usually one)."""
    prefix = f"{job_id}:"
    return [m for m, _ in leases(connection, queue_name) if m.startswith(prefix)]


def failure_text(job: Any) -> str:
    """The last line of the error RQ recorded for ``job`` ('' when none)."""
    result = job.latest_result()
    text = (getattr(result, "exc_string", None) or "").strip()
    return text.splitlines()[-1] if text else ""
