"""Submitting runs and looking at them: :func:`submit` and :class:`Run`.

A run is a token (``run.id``) and a handful of keys that share it (see ``dagrq/keys.py``):
the run hash, the node-state hash, one output string per finished node and one received-set
context per waiting join. Every RQ job of the run is created at submit, so a join is
enqueued inside the same atomic step that records its last arrival.
"""

from __future__ import annotations

import contextlib
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import networkx as nx
from pydantic import BaseModel
from redis.exceptions import WatchError
from rq import Callback, Queue
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry

from . import join, keys
from .codec import get_codec
from .dag import DAG, output_annotation
from .errors import NoResult, RunError, RunFailed, RunNotFound, RunTimeout
from .plan import NodeSpec, Plan
from .rules import decide
from .runtime import RQ_SERIALIZER, DagrqJob, deliver, load_plan, read_mapped, rq_retry
from .status import FINAL_NODE_STATES, NodeStatus, RunStatus


class Explanation(BaseModel):
    """One node explained (``Run.explain``, ``dagrq why``).

    ``decision`` is what the node's rule says given the parents that have ended: ``fire``,
    ``skip`` (can no longer be met) or ``wait``.
    """

    node: str
    state: str
    rule: str
    parents: dict[str, str]
    arrived: dict[str, str]
    decision: str
    waits_for: list[str]
    error: str | None = None


def submit(dag: DAG, connection: Any, params: dict[str, Any]) -> Run:
    """Validate ``dag`` and ``params``, then write and enqueue one run in one transaction.

    Nothing is written when validation fails. The DAG's plan is stored once per version;
    every RQ job of the run is created here: roots on their queues, the others ``deferred``
    until ``complete.lua`` fires them.

    Raises
    ------
    DAGError, ParameterError
        before any write.
    """
    dag.validate()
    stored = dag.validate_params(params)
    plan = dag.plan
    run_id = uuid.uuid4().hex
    now = time.time()
    ttl = plan.ttl_s
    specs = plan.specs
    node_fields: dict[str, Any] = {}
    for spec in specs.values():
        node_fields[f"{spec.name}:state"] = "pending" if spec.parents else "queued"
        node_fields[f"{spec.name}:queue"] = spec.queue_name
        if not spec.parents:
            node_fields[f"{spec.name}:queued"] = repr(now)
    pipe = connection.pipeline(transaction=True)
    pipe.multi()  # explicit MULTI first: RQ's enqueue_job expects it on a caller's pipeline
    pipe.set(keys.plan_key(plan.dag, plan.hash), plan.to_json(), ex=ttl)
    pipe.hset(
        keys.run_key(run_id),
        mapping={
            "dag": plan.dag,
            "state": "running",
            "pending": len(specs),
            "failed": 0,
            "params": json.dumps(stored),
            "created_at": repr(now),
            "plan": plan.hash,
            "serializer": plan.serializer,
            "ttl_s": ttl,
            "nodes": json.dumps(list(specs)),
        },
    )
    pipe.expire(keys.run_key(run_id), ttl)
    pipe.hset(keys.nodes_key(run_id), mapping=node_fields)
    pipe.expire(keys.nodes_key(run_id), ttl)
    stamp = repr(now)
    pipe.xadd(keys.events_key(run_id), {"node": "", "state": "running", "ts": stamp})
    for spec in specs.values():
        if not spec.parents:
            pipe.xadd(keys.events_key(run_id), {"node": spec.name, "state": "queued", "ts": stamp})
    pipe.expire(keys.events_key(run_id), ttl)
    _create_jobs(connection, pipe, plan, run_id, list(specs.values()))
    pipe.execute()
    return Run(run_id, connection, dag=dag)


def _create_jobs(
    connection: Any, pipe: Any, plan: Plan, run_id: str, specs: list[NodeSpec]
) -> None:
    """Create the RQ jobs of ``specs`` on ``pipe`` (in MULTI): nodes without parents are
    enqueued; the others are saved ``deferred`` for ``complete.lua`` to fire."""
    queues: dict[str, Queue] = {}
    for spec in specs:
        job = Job.create(
            keys.ENTRYPOINT,
            kwargs={"dag": plan.dag, "run": run_id, "node": spec.name},
            connection=connection,
            id=keys.job_id(run_id, spec.name),
            description=f"{plan.dag}.{spec.name}[{run_id}]",
            timeout=spec.timeout or -1,
            retry=rq_retry(spec.retry),
            result_ttl=spec.result_ttl,
            failure_ttl=plan.ttl_s,
            ttl=plan.ttl_s,
            origin=spec.queue_name,
            serializer=RQ_SERIALIZER,
            on_failure=Callback(keys.ON_FAILURE),
            status=JobStatus.DEFERRED if spec.parents else None,
        )
        if spec.parents:
            job.save(pipeline=pipe)
            pipe.expire(job.key, plan.ttl_s)
            continue
        queue = queues.get(spec.queue_name)
        if queue is None:
            queue = queues[spec.queue_name] = _queue(connection, spec.queue_name)
        queue.enqueue_job(job, pipeline=pipe)
    for spec in specs:
        pipe.sadd(Queue.redis_queues_keys, keys.queue_key(spec.queue_name))


def _queue(connection: Any, name: str) -> Queue:
    return Queue(name, connection=connection, serializer=RQ_SERIALIZER, job_class=DagrqJob)


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
        plan = self._plan_or_none(meta)
        nodes = {
            name: NodeStatus(
                state=f.get("state", "pending"),
                queue=f.get("queue"),
                attempts=int(f.get("attempts", 0)),
                queued_at=_float(f.get("queued")),
                started_at=_float(f.get("started")),
                ended_at=_float(f.get("ended")),
                error=f.get("error")
                or (f.get("last_error") if f.get("state") != "succeeded" else None),
                traceback=f.get("traceback"),
                items=_item_counts(f),
            )
            for name, f in fields.items()
        }
        if plan is not None:
            for name, node in nodes.items():
                spec = plan.specs.get(name)
                if spec is None:
                    continue
                node.rule, node.parents = spec.rule, list(spec.parents)
                if node.state == "pending":
                    node.waits_for = [
                        p for p in spec.parents if nodes[p].state not in FINAL_NODE_STATES
                    ]
        return RunStatus(
            id=self.id,
            dag=meta["dag"],
            state=meta["state"],
            created_at=float(meta["created_at"]),
            ended_at=_float(meta.get("ended_at")),
            params=json.loads(meta.get("params", "{}")),
            nodes=nodes,
        )

    def explain(self, node: str) -> Explanation:
        """Why ``node`` is in its state: its rule, its parents' outcomes, what it waits for.

        Raises
        ------
        NoResult
            when the run's plan has no such node.
        """
        status = self.status()
        info = status.nodes.get(node)
        if info is None or info.rule is None:
            raise NoResult(f"run {self.id} has no node {node!r} (nodes: {', '.join(status.nodes)})")
        arrived = {
            p: status.nodes[p].state
            for p in info.parents
            if status.nodes[p].state in FINAL_NODE_STATES
        }
        counts = {"succeeded": 0, "failed": 0, "skipped": 0}
        for outcome in arrived.values():
            counts["skipped" if outcome == "canceled" else outcome] += 1
        decision = decide(info.rule, total=len(info.parents), **counts) if info.parents else "fire"
        return Explanation(
            node=node,
            state=info.state,
            rule=info.rule,
            parents={p: status.nodes[p].state for p in info.parents},
            arrived=arrived,
            decision=decision,
            waits_for=[p for p in info.parents if p not in arrived],
            error=info.error,
        )

    def events(self, *, follow: bool = True, block_ms: int = 1000) -> Iterator[dict[str, Any]]:
        """The run's state changes, oldest first, as dicts (``id``, ``node``, ``state``,
        ``ts``, and ``error`` or ``attempt`` where they apply); ``node`` is ``""`` for the run
        itself. With ``follow``, blocks for new entries (``XREAD BLOCK``) and stops after the
        run's own final entry; without, stops at the end of what is stored.
        """
        key = keys.events_key(self.id)
        last = "0-0"
        final = (None, b"succeeded", b"failed", b"canceled")
        while True:
            reply = self.connection.xread(
                {key: last}, count=1000, block=block_ms if follow else None
            )
            if not reply:
                if not follow or self.connection.hget(keys.run_key(self.id), "state") in final:
                    return
                continue
            for entry_id, fields in reply[0][1]:
                last = entry_id.decode()
                event: dict[str, Any] = {"id": last}
                event.update({k.decode(): v.decode() for k, v in fields.items()})
                yield event
                if follow and event.get("node") == "" and event.get("state") != "running":
                    return

    def plan(self) -> Plan:
        """The plan (graph and options) this run is pinned to, read from Redis."""
        meta = self._meta()
        return load_plan(self.connection, meta["dag"], meta["plan"])

    def _plan_or_none(self, meta: dict[str, str]) -> Plan | None:
        try:
            return load_plan(self.connection, meta["dag"], meta["plan"])
        except (RunNotFound, KeyError):
            return None

    def cancel(self) -> RunStatus:
        """Cancel the run: queued jobs leave their queues (item and chunk jobs of mapped nodes
        too), running ones are stopped (RQ's stop-job command), pending ones never start; the
        run ends ``canceled``.

        A run that has already ended is left as it is. Returns the status after the cancel.
        """
        done = join.cancel(self.connection, self.id)
        if done.run_state == "gone":
            raise RunNotFound(f"run {self.id!r} not found in this Redis")
        for node in done.queued:
            with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
                DagrqJob.fetch(
                    keys.job_id(self.id, node), connection=self.connection, serializer=RQ_SERIALIZER
                ).cancel()
        for node in done.running:
            with contextlib.suppress(NoSuchJobError, InvalidJobOperation):
                send_stop_job_command(
                    self.connection, keys.job_id(self.id, node), serializer=RQ_SERIALIZER
                )
        plan = self.plan()
        if done.running and any(s.map_over for s in plan.specs.values()):
            mapped = sorted({s.queue_name for s in plan.specs.values() if s.map_over})
            join.purge(self.connection, self.id, mapped)
        return self.status()

    def retry(self) -> RunStatus:
        """Resume an ended run: re-run its failed, skipped and canceled nodes and everything
        downstream of them, reusing the stored outputs of the nodes that succeeded.

        The join contexts of the re-run nodes are rebuilt by delivering their finished
        parents again through the same atomic arrival step as a first run. Those parents are
        recorded in the run (``resuming``) in the same transaction that resets the nodes, so
        if this process dies before delivering them all, calling ``retry()`` again finishes
        the resume (deliveries are idempotent).

        Raises
        ------
        RunError
            when the run is still running (wait for it or cancel it first).
        """
        plan = self.plan()
        run_key, nodes_key = keys.run_key(self.id), keys.nodes_key(self.id)
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(run_key, nodes_key)
                state, resuming = pipe.hmget(run_key, "state", "resuming")
                if state == b"running" and resuming is not None:
                    pipe.unwatch()
                    return self._redeliver(plan, json.loads(resuming))
                if state == b"running":
                    raise RunError(
                        f"run {self.id} is still running; wait for it to end or cancel it first"
                    )
                raw = pipe.hgetall(nodes_key)
                states = {n: raw.get(f"{n}:state".encode()) for n in plan.specs}
                redo: set[str] = {
                    n for n, st in states.items() if st in (b"failed", b"skipped", b"canceled")
                }
                for n in list(redo):
                    redo |= nx.descendants(plan.graph, n)
                if not redo:
                    return self.status()
                order = [n for n in plan.specs if n in redo]  # topological
                sources = sorted({p for n in order for p in plan.specs[n].parents if p not in redo})
                pipe.multi()
                self._reset(pipe, plan, order)
                pipe.hset(run_key, "resuming", json.dumps(sources))
                _create_jobs(self.connection, pipe, plan, self.id, [plan.specs[n] for n in order])
                pipe.execute()
            except WatchError:
                raise RunError(
                    f"run {self.id} changed while it was being resumed; try again"
                ) from None
        return self._redeliver(plan, sources)

    def _redeliver(self, plan: Plan, sources: list[str]) -> RunStatus:
        """Deliver the resume's finished parents again (rebuilds the contexts, fires what is
        ready), then clear the run's ``resuming`` record."""
        for parent in sources:
            deliver(plan.specs, plan.ttl_s, self.connection, self.id, parent, "succeeded")
        self.connection.hdel(keys.run_key(self.id), "resuming")
        return self.status()

    def _reset(self, pipe: Any, plan: Plan, order: list[str]) -> None:
        now = repr(time.time())
        fields = (
            "error",
            "last_error",
            "traceback",
            "started",
            "ended",
            "queued",
            "items_total",
            "items_done",
            "items_failed",
            "items_started",
            "first_item_error",
            "expanded",
        )
        for name in order:
            spec = plan.specs[name]
            root = not spec.parents
            pipe.delete(
                keys.output_key(self.id, name),
                keys.join_key(self.id, name),
                keys.inputs_key(self.id, name),
                keys.job_key(self.id, name),
                keys.items_key(self.id, name),
                keys.map_results_key(self.id, name),
                keys.map_errors_key(self.id, name),
            )
            pipe.hdel(keys.nodes_key(self.id), *(f"{name}:{f}" for f in fields))
            state = {f"{name}:state": "queued" if root else "pending"}
            if root:
                state[f"{name}:queued"] = now
            pipe.hset(keys.nodes_key(self.id), mapping=state)
            job_id = keys.job_id(self.id, name)
            for registry in (FailedJobRegistry, CanceledJobRegistry):
                registry(spec.queue_name, connection=self.connection).remove(job_id, pipeline=pipe)
        pipe.hset(
            keys.run_key(self.id), mapping={"state": "running", "pending": len(order), "failed": 0}
        )
        pipe.hdel(keys.run_key(self.id), "ended_at")
        pipe.xadd(keys.events_key(self.id), {"node": "", "state": "running", "ts": now})
        pipe.expire(keys.events_key(self.id), plan.ttl_s)

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
        blob = self._output(node, self._plan_or_none(self._meta()))
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
        status = self.status()
        plan = self._plan_or_none(self._meta())
        return {
            name: self._decode(name, blob)
            for name, node in status.nodes.items()
            if node.state == "succeeded" and (blob := self._output(name, plan)) is not None
        }

    def _output(self, node: str, plan: Plan | None) -> bytes | None:
        spec = plan.specs.get(node) if plan is not None else None
        if plan is not None and spec is not None and spec.map_over is not None:
            state = self.connection.hget(keys.nodes_key(self.id), f"{node}:state")
            if state != b"succeeded":
                return None
            return read_mapped(get_codec(plan.serializer), self.connection, self.id, node)
        blob: bytes | None = self.connection.get(keys.output_key(self.id, node))
        return blob

    def _decode(self, node: str, blob: bytes) -> Any:
        serializer = "json"
        annotation = None
        if self.dag is not None:
            serializer = self.dag.serializer
            fn = self.dag.nodes.get(node)
            annotation = output_annotation(fn) if fn is not None else None
        else:
            raw = self.connection.hget(keys.run_key(self.id), "serializer")
            serializer = raw.decode() if raw else "json"
        return get_codec(serializer).loads(blob, annotation)


def _item_counts(fields: dict[str, Any]) -> dict[str, int] | None:
    """A mapped node's item counts: total, queued, running, done, failed."""
    if "items_total" not in fields:
        return None
    total = int(fields["items_total"])
    done = int(fields.get("items_done", 0))
    failed = int(fields.get("items_failed", 0))
    started = min(total, int(fields.get("items_started", 0)))
    running = max(0, started - done)
    return {
        "total": total,
        "queued": max(0, total - started),
        "running": running,
        "done": done,
        "failed": failed,
    }


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None
