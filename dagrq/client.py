"""Submitting runs and looking at them: :func:`submit` and :class:`Run`.

A run is a token (``run.id``) and a handful of keys that share it (see ``dagrq/keys.py``):
the run hash, the node-state hash, one output string per finished node and one received-set
context per waiting join. Every RQ job of the run is created at submit, so a join is
enqueued inside the same atomic step that records its last arrival.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

from pydantic import BaseModel
from rq import Queue
from rq.job import Job, JobStatus

from . import keys
from .codec import get_codec
from .dag import DAG
from .errors import NoResult, RunFailed, RunNotFound, RunTimeout
from .runtime import RQ_SERIALIZER, DagrqJob

#: node states; the last four are final
NODE_STATES = ("pending", "queued", "running", "succeeded", "failed", "skipped", "canceled")
FINAL_NODE_STATES = frozenset({"succeeded", "failed", "skipped", "canceled"})
#: run states; every state but ``running`` is final
RUN_STATES = ("running", "succeeded", "failed", "canceled")


class NodeStatus(BaseModel):
    """One node of one run, as ``Run.status()`` reports it."""

    state: str
    queue: str | None = None
    attempts: int = 0
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    traceback: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from the last attempt's start to the end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)


class RunStatus(BaseModel):
    """A run's state and every node's state at one moment."""

    id: str
    dag: str
    state: str
    created_at: float
    ended_at: float | None = None
    params: dict[str, Any] = {}
    nodes: dict[str, NodeStatus] = {}

    @property
    def done(self) -> bool:
        """True when the run has ended (any state but ``running``)."""
        return self.state != "running"

    def counts(self) -> dict[str, int]:
        """How many nodes are in each state."""
        out = dict.fromkeys(NODE_STATES, 0)
        for node in self.nodes.values():
            out[node.state] = out.get(node.state, 0) + 1
        return out

    def failed(self) -> dict[str, str]:
        """``{node: one-line error}`` of the failed nodes."""
        return {n: s.error or "failed" for n, s in self.nodes.items() if s.state == "failed"}


def submit(dag: DAG, connection: Any, params: dict[str, Any]) -> Run:
    """Validate ``dag`` and ``params``, then write and enqueue one run in one transaction.

    Nothing is written when validation fails. Every RQ job of the run is created here:
    roots on their queues, the others ``deferred`` until ``complete.lua`` fires them.

    Raises
    ------
    DAGError, ParameterError
        before any write.
    """
    dag.validate()
    stored = dag.validate_params(params)
    run_id = uuid.uuid4().hex
    now = time.time()
    ttl = dag.ttl_s
    specs = dag.specs
    node_fields: dict[str, Any] = {}
    for spec in specs.values():
        node_fields[f"{spec.name}:state"] = "pending" if spec.parents else "queued"
        node_fields[f"{spec.name}:queue"] = spec.queue_name
        if not spec.parents:
            node_fields[f"{spec.name}:queued"] = repr(now)
    queues: dict[str, Queue] = {}
    pipe = connection.pipeline(transaction=True)
    pipe.multi()  # explicit MULTI first: RQ's enqueue_job expects it on a caller's pipeline
    pipe.hset(
        keys.run_key(run_id),
        mapping={
            "dag": dag.name,
            "state": "running",
            "pending": len(specs),
            "failed": 0,
            "params": json.dumps(stored),
            "created_at": repr(now),
            "plan": dag.plan_hash,
            "serializer": dag.serializer,
            "ttl_s": ttl,
            "nodes": json.dumps(list(specs)),
        },
    )
    pipe.expire(keys.run_key(run_id), ttl)
    pipe.hset(keys.nodes_key(run_id), mapping=node_fields)
    pipe.expire(keys.nodes_key(run_id), ttl)
    for spec in specs.values():
        job = Job.create(
            keys.ENTRYPOINT,
            kwargs={"dag": dag.name, "run": run_id, "node": spec.name},
            connection=connection,
            id=keys.job_id(run_id, spec.name),
            description=f"{dag.name}.{spec.name}[{run_id}]",
            timeout=spec.timeout or -1,
            retry=_rq_retry(spec.retry),
            result_ttl=spec.result_ttl,
            failure_ttl=ttl,
            ttl=ttl,
            origin=spec.queue_name,
            serializer=RQ_SERIALIZER,
            status=JobStatus.DEFERRED if spec.parents else None,
        )
        if spec.parents:
            job.save(pipeline=pipe)
            pipe.expire(job.key, ttl)
        else:
            queue = queues.get(spec.queue_name)
            if queue is None:
                queue = queues[spec.queue_name] = Queue(
                    spec.queue_name,
                    connection=connection,
                    serializer=RQ_SERIALIZER,
                    job_class=DagrqJob,
                )
            queue.enqueue_job(job, pipeline=pipe)
    for spec in specs.values():
        pipe.sadd(Queue.redis_queues_keys, keys.queue_key(spec.queue_name))
    pipe.execute()
    return Run(run_id, connection, dag=dag)


def _rq_retry(retry: Any) -> Any:
    if retry is None or retry.max == 0:
        return None
    from rq import Retry as RQRetry

    return RQRetry(max=retry.max, interval=list(retry.backoff))


class Run:
    """A handle on one run; cheap to create, reads Redis on each call.

    Attributes:
        id: the run token.
        connection: the ``redis.Redis`` it reads.
        dag: the :class:`~dagrq.dag.DAG` when known (gives typed results), else ``None``.
    """

    def __init__(self, run_id: str, connection: Any, dag: DAG | None = None) -> None:
        self.id = run_id
        self.connection = connection
        self.dag = dag

    def __repr__(self) -> str:
        return f"<dagrq.Run {self.id}>"

    @classmethod
    def fetch(cls, run_id: str, connection: Any, dag: DAG | None = None) -> Run:
        """Re-attach to a run from any process.

        Raises
        ------
        RunNotFound
            when no such run exists in this Redis (wrong id, other db, or expired).
        """
        if not connection.exists(keys.run_key(run_id)):
            raise RunNotFound(
                f"run {run_id!r} not found in this Redis; check the id and --url "
                "(runs expire after their DAG's ttl_s)"
            )
        return cls(run_id, connection, dag=dag)

    # ---------------------------------------------------------------- reading
    def _meta(self) -> dict[str, str]:
        raw = self.connection.hgetall(keys.run_key(self.id))
        if not raw:
            raise RunNotFound(
                f"run {self.id!r} not found in this Redis (expired or never submitted)"
            )
        return {k.decode(): v.decode() for k, v in raw.items()}

    def status(self) -> RunStatus:
        """The run's state and every node's state, attempts, timings and error."""
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.run_key(self.id))
            pipe.hgetall(keys.nodes_key(self.id))
            raw_meta, raw_nodes = pipe.execute()
        if not raw_meta:
            raise RunNotFound(
                f"run {self.id!r} not found in this Redis (expired or never submitted)"
            )
        meta = {k.decode(): v.decode() for k, v in raw_meta.items()}
        fields: dict[str, dict[str, Any]] = {n: {} for n in json.loads(meta.get("nodes", "[]"))}
        for k, v in raw_nodes.items():
            node, _, attr = k.decode().rpartition(":")
            fields.setdefault(node, {})[attr] = v.decode()
        nodes = {
            name: NodeStatus(
                state=f.get("state", "pending"),
                queue=f.get("queue"),
                attempts=int(f.get("attempts", 0)),
                queued_at=_float(f.get("queued")),
                started_at=_float(f.get("started")),
                ended_at=_float(f.get("ended")),
                error=f.get("error"),
                traceback=f.get("traceback"),
            )
            for name, f in fields.items()
        }
        return RunStatus(
            id=self.id,
            dag=meta["dag"],
            state=meta["state"],
            created_at=float(meta["created_at"]),
            ended_at=_float(meta.get("ended_at")),
            params=json.loads(meta.get("params", "{}")),
            nodes=nodes,
        )

    def wait(self, timeout: float | None = None, *, poll_s: float = 0.2) -> RunStatus:
        """Block until the run ends; return its final status.

        Raises
        ------
        RunTimeout
            after ``timeout`` seconds with the run still going (the run is not touched).
        RunFailed
            when the run ended ``failed`` or ``canceled``; ``.failed`` names the nodes.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        key = keys.run_key(self.id)
        while True:
            state = self.connection.hget(key, "state")
            if state is None:
                raise RunNotFound(f"run {self.id!r} not found in this Redis")
            if state != b"running":
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise RunTimeout(
                    f"run {self.id} still running after {timeout} s; wait longer or check "
                    f"`dagrq status {self.id}`"
                )
            time.sleep(
                delay if deadline is None else min(delay, max(0.0, deadline - time.monotonic()))
            )
            delay = min(poll_s, delay * 2)
        final = self.status()
        if final.state != "succeeded":
            raise RunFailed(self.id, final.failed() or {"run": final.state})
        return final

    def result(self, node: str) -> Any:
        """One node's output, decoded (typed by its return annotation when the DAG is known).

        Raises
        ------
        NoResult
            when the node has no stored output: not finished, failed, skipped, or expired.
        """
        blob = self.connection.get(keys.output_key(self.id, node))
        if blob is None:
            state = self.connection.hget(keys.nodes_key(self.id), f"{node}:state")
            shown = state.decode() if state else "unknown to this run"
            raise NoResult(
                f"node {node!r} of run {self.id} has no result (state: {shown}); "
                "see `dagrq status` for why"
            )
        return self._decode(node, blob)

    def results(self) -> dict[str, Any]:
        """``{node: output}`` for every node that succeeded, in topological order."""
        names = json.loads(self._meta().get("nodes", "[]"))
        blobs = self.connection.mget([keys.output_key(self.id, n) for n in names])
        return {n: self._decode(n, b) for n, b in zip(names, blobs, strict=True) if b is not None}

    def _decode(self, node: str, blob: bytes) -> Any:
        serializer = "json"
        annotation = None
        if self.dag is not None:
            serializer = self.dag.serializer
            fn = self.dag.nodes.get(node)
            annotation = fn.signature.return_annotation if fn is not None else None
        else:
            raw = self.connection.hget(keys.run_key(self.id), "serializer")
            serializer = raw.decode() if raw else "json"
        return get_codec(serializer).loads(blob, annotation)


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None
