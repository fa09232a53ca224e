"""Run-scoped Redis I/O: one handle, :class:`RunStore`, per ``(connection, run id, plan)``.

Every read and write of a run goes through here: creating it (one MULTI/EXEC with its RQ jobs),
the atomic steps of an attempt (start, deliver, requeue, record items), reading its status,
outputs and events, canceling and resuming it. The atomic steps are the Lua scripts of
:mod:`dagrq.scripts`; RQ's jobs are made and stopped by :mod:`dagrq.rqjobs`. Callers above
(job bodies, the client) never spell a key.
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import networkx as nx
from redis.exceptions import WatchError

from . import index, keys, rqjobs, scripts
from .codec import get_codec
from .errors import RunError, RunNotFound
from .node import join_items
from .nodelogs import Capture
from .plan import NodeSpec, Plan
from .status import FINAL_NODE_STATES, RunStatus, parse_status

#: fields of a node reset by a resume (its state is set anew)
_RESET_FIELDS = (
    "error",
    "reason",
    "chosen",
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
#: how many replicas must hold each step before a worker goes on (``WAIT``; 0: none)
WAIT_REPLICAS_ENV = "DAGRQ_WAIT_REPLICAS"
#: how long a step waits for them, in milliseconds
WAIT_MS_ENV = "DAGRQ_WAIT_MS"
#: seconds a cancel waits for the nodes it stopped to stop
STOP_WAIT_S = 15.0
#: the run states after which a run's event stream has nothing more to say
_FINAL_RUN_STATES = (b"succeeded", b"failed", b"canceled")

log = logging.getLogger(__name__)

_PLANS: dict[str, Plan] = {}


def load_plan(connection: Any, dag: str, plan_hash: str) -> Plan:
    """The stored plan of a DAG version (cached per process: a plan never changes).

    A plan is its own checksum: one whose content does not hash to the version it is stored
    under was edited (or planted), and is refused.

    Raises:
        RunNotFound: the plan has expired or was never stored.
        RunError: the stored plan does not hash to its version.
    """
    plan = _PLANS.get(plan_hash)
    if plan is None:
        raw = connection.get(keys.plan_key(dag, plan_hash))
        if raw is None:
            raise RunNotFound(
                f"the plan {plan_hash} of DAG {dag!r} is not in this Redis (expired?); "
                "submit a new run"
            )
        plan = Plan.from_json(raw)
        if plan.hash != plan_hash:
            raise RunError(
                f"the plan stored as version {plan_hash} of DAG {dag!r} hashes to {plan.hash}: "
                "it was edited in Redis; submit a new run (a worker of that version stores it "
                "again)"
            )
        _PLANS[plan_hash] = plan
    return plan


@dataclass(frozen=True)
class ChunkInputs:
    """What one item job of a mapped node reads (:meth:`RunStore.read_chunk`)."""

    state: str | None
    params: dict[str, Any]
    plan_hash: str | None
    total: int
    items: list[bytes | None]
    outputs: dict[str, bytes | None]


def _decode(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def active_runs(connection: Any) -> list[str]:
    """Ids of the runs that may still be running, oldest first (ended ones are pruned by the
    reconciler)."""
    return [r.decode() for r in connection.zrange(keys.active_runs_key(), 0, -1)]


def _fire_always(pipe: Any, run_id: str, specs: Iterable[NodeSpec], ttl_s: int) -> None:
    """On ``pipe``: mark the ``always`` nodes among ``specs`` as fired with no parent (so
    ``start.lua`` reads none of their parents, whoever finished first)."""
    for spec in specs:
        if spec.parents and spec.rule == "always":
            pipe.hset(keys.inputs_key(run_id, spec.name), "#fired", "at submit")
            pipe.expire(keys.inputs_key(run_id, spec.name), ttl_s)


def claimed_since(connection: Any, job_id: str, ttl_s: int) -> float:
    """Since when the caller has seen ``job_id`` claimed but not started: the time of the
    first call (the marker lives ``ttl_s`` seconds)."""
    now = time.time()
    key = keys.first_seen_key(job_id)
    if connection.set(key, repr(now), nx=True, ex=ttl_s):
        return now
    return float(connection.get(key) or now)


class RunStore:
    """One run's keys on one connection, read and written through the run's plan.

    Args:
        connection: a ``redis.Redis``.
        run_id: the run token.
        plan: the plan the run is pinned to; ``None`` reads it from Redis when first needed.
    """

    def __init__(self, connection: Any, run_id: str, plan: Plan | None = None) -> None:
        self.connection = connection
        self.run_id = run_id
        self._plan = plan
        self._replicas = int(os.environ.get(WAIT_REPLICAS_ENV) or 0)

    def _replicated(self) -> None:
        """With ``$DAGRQ_WAIT_REPLICAS`` set, block until that many replicas hold the step just
        written (``WAIT``), so a failover cannot lose it; a slow replica only logs a warning
        after ``$DAGRQ_WAIT_MS`` (default 1000)."""
        if not self._replicas:
            return
        timeout_ms = int(os.environ.get(WAIT_MS_ENV) or 1000)
        acked = self.connection.wait(self._replicas, timeout_ms)
        if acked < self._replicas:
            log.warning(
                "run %s: %d of %d replicas acknowledged a step within %d ms",
                self.run_id,
                acked,
                self._replicas,
                timeout_ms,
            )

    def __repr__(self) -> str:
        return f"<dagrq.RunStore {self.run_id}>"

    # ------------------------------------------------------------------ create
    @classmethod
    def create(
        cls,
        connection: Any,
        plan: Plan,
        params: Mapping[str, Any],
        *,
        name: str | None = None,
        tags: Sequence[str] = (),
    ) -> RunStore:
        """Write one run of ``plan`` and create its RQ jobs, in one MULTI/EXEC.

        The plan is stored once per version; roots are enqueued, every other job is saved
        ``deferred`` until ``complete.lua`` fires it. ``params`` are already validated. The
        run enters the run indexes (every DAG's and its own), which keep the newest
        :data:`~dagrq.keys.RUN_INDEX_MAX`.
        """
        run_id = uuid.uuid4().hex
        now = repr(time.time())
        ttl, specs = plan.ttl_s, plan.specs
        node_fields: dict[str, Any] = {}
        for spec in specs.values():
            node_fields[f"{spec.name}:state"] = "queued" if spec.starts_at_submit else "pending"
            node_fields[f"{spec.name}:queue"] = spec.queue_name
            if spec.starts_at_submit:
                node_fields[f"{spec.name}:queued"] = now
        events = keys.events_key(run_id)
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
                "params": json.dumps(params),
                "created_at": now,
                "plan": plan.hash,
                "serializer": plan.serializer,
                "ttl_s": ttl,
                "nodes": json.dumps(list(specs)),
                "name": name or "",
                "tags": json.dumps(list(tags)),
            },
        )
        pipe.expire(keys.run_key(run_id), ttl)
        indexed = {keys.runs_index_key(): index.member(plan.dag, run_id)}
        indexed[keys.runs_index_key(plan.dag)] = run_id
        for key, entry in indexed.items():
            pipe.zadd(key, {entry: float(now)})
            pipe.zremrangebyrank(key, 0, -keys.RUN_INDEX_MAX - 1)
        pipe.hset(keys.nodes_key(run_id), mapping=node_fields)
        pipe.expire(keys.nodes_key(run_id), ttl)
        pipe.xadd(events, {"node": "", "state": "running", "ts": now})
        for spec in specs.values():
            if spec.starts_at_submit:
                pipe.xadd(events, {"node": spec.name, "state": "queued", "ts": now})
        _fire_always(pipe, run_id, specs.values(), ttl)
        pipe.expire(events, ttl)
        pipe.zadd(keys.active_runs_key(), {run_id: float(now)})
        rqjobs.create_node_jobs(connection, pipe, plan, run_id, list(specs.values()))
        pipe.execute()
        store = cls(connection, run_id, plan)
        store._replicated()
        return store

    def capture_logs(self, node: str, attempt: int, item: int | None = None) -> Capture:
        """A context that captures a node body's stdout, stderr and logging into the node's
        log in this run (see :mod:`dagrq.nodelogs`)."""
        return Capture(self.connection, self.run_id, node, attempt, self.plan.ttl_s, item)

    # ------------------------------------------------------------------- reads
    def exists(self) -> bool:
        """True while the run's hash exists (submitted, not expired)."""
        return bool(self.connection.exists(keys.run_key(self.run_id)))

    def meta(self) -> dict[str, str]:
        """The run hash, decoded.

        Raises:
            RunNotFound: the run does not exist (never submitted, or expired).
        """
        raw = self.connection.hgetall(keys.run_key(self.run_id))
        if not raw:
            raise self._not_found()
        return _decode(raw)

    def state(self) -> str | None:
        """The run's state, or None when the run does not exist."""
        raw = self.connection.hget(keys.run_key(self.run_id), "state")
        return raw.decode() if raw is not None else None

    @property
    def plan(self) -> Plan:
        """The run's plan (read from Redis once when the handle was made without one).

        Raises:
            RunNotFound: the run or its plan is gone.
        """
        if self._plan is None:
            meta = self.meta()
            self._plan = load_plan(self.connection, meta["dag"], meta["plan"])
        return self._plan

    def plan_or_none(self, meta: Mapping[str, str]) -> Plan | None:
        """The run's plan, or None when it cannot be read (expired, or a damaged run)."""
        if self._plan is None:
            try:
                self._plan = load_plan(self.connection, meta["dag"], meta["plan"])
            except (RunError, KeyError):  # RunNotFound is a RunError too
                return None
        return self._plan

    def status(self) -> RunStatus:
        """The run's state and every node's state, attempts, timings and error (one
        MULTI/EXEC read of the run and node hashes).

        Raises:
            RunNotFound: the run does not exist.
        """
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.hgetall(keys.run_key(self.run_id))
            pipe.hgetall(keys.nodes_key(self.run_id))
            raw_meta, raw_nodes = pipe.execute()
        if not raw_meta:
            raise self._not_found()
        meta = _decode(raw_meta)
        plan = self.plan_or_none(meta)
        status = parse_status(self.run_id, meta, _decode(raw_nodes), plan)
        if status.state == "running" and plan is not None:
            status.unserved = self._unserved(status, plan)
        return status

    def _unserved(self, status: RunStatus, plan: Plan) -> list[str]:
        """The queues where nodes of this run wait (as jobs) with no live worker of the run's
        version listening."""
        waiting = sorted(
            {
                n.queue
                for n in status.nodes.values()
                if n.queue and (n.state == "queued" or (n.items and n.items["queued"]))
            }
        )
        if not waiting:
            return []
        live = rqjobs.listeners(self.connection, [plan.rq_queue(q) for q in waiting])
        return [q for q in waiting if not live[plan.rq_queue(q)]]

    def node_state(self, node: str) -> str | None:
        """One node's state, or None when the run does not know the node."""
        raw = self.connection.hget(keys.nodes_key(self.run_id), f"{node}:state")
        return raw.decode() if raw is not None else None

    def output(self, node: str) -> bytes | None:
        """A node's stored output (a mapped node's: the list of its item results), or None
        when it has none (not succeeded, or expired)."""
        spec = self.plan.specs.get(node)
        if spec is not None and spec.map_over is not None:
            if self.node_state(node) != "succeeded":
                return None
            return self.read_mapped(node)
        blob: bytes | None = self.connection.get(keys.output_key(self.run_id, node))
        return blob

    def read_mapped(self, node: str) -> bytes | None:
        """A mapped node's results as one serialized list, in item order (``None`` where an
        item failed; ``None`` for a map that never expanded)."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hget(keys.nodes_key(self.run_id), f"{node}:items_total")
            pipe.hgetall(keys.map_results_key(self.run_id, node))
            total, results = pipe.execute()
        if total is None:
            return None
        codec = get_codec(self.plan.serializer)
        return join_items(codec, [results.get(str(i).encode()) for i in range(int(total))])

    def read_inputs(
        self, spec: NodeSpec, outputs: Mapping[str, bytes | None]
    ) -> dict[str, bytes | None]:
        """``outputs`` with each mapped data parent's results joined into one list."""
        specs = self.plan.specs
        mapped = [
            p for p in spec.data_parents if specs[p].map_over is not None and p != spec.map_over
        ]
        return {**outputs, **{p: self.read_mapped(p) for p in mapped}}

    def events(self, *, follow: bool = True, block_ms: int = 1000) -> Iterator[dict[str, Any]]:
        """The run's state changes, oldest first (see :meth:`dagrq.client.Run.events`)."""
        key = keys.events_key(self.run_id)
        last = "0-0"
        while True:
            reply = self.connection.xread(
                {key: last}, count=1000, block=block_ms if follow else None
            )
            if not reply:
                state = self.connection.hget(keys.run_key(self.run_id), "state")
                if not follow or state is None or state in _FINAL_RUN_STATES:
                    return
                continue
            for entry_id, fields in reply[0][1]:
                last = entry_id.decode()
                event: dict[str, Any] = {"id": last, **_decode(fields)}
                yield event
                if follow and event.get("node") == "" and event.get("state") != "running":
                    return

    # ------------------------------------------------------------ atomic steps
    def start(self, spec: NodeSpec) -> scripts.Started:
        """Begin an attempt of ``spec`` (``start.lua``)."""
        started = scripts.start(self.connection, self.run_id, spec, self.plan.ttl_s, self.plan.hash)
        self._replicated()
        return started

    def requeue(self, node: str, error: str, attempt: int = 0) -> bool:
        """Show ``node`` as ``queued`` again: RQ will retry it (``requeue.lua``); False when
        the attempt is stale or the node no longer runs."""
        done = scripts.requeue(self.connection, self.run_id, node, error, attempt)
        self._replicated()
        return done

    def deliver(
        self,
        node: str,
        outcome: str,
        *,
        output: bytes = b"",
        error: str = "",
        traceback: str = "",
        attempt: int = 0,
        chosen: Sequence[str] | None = None,
    ) -> bool:
        """Record ``node``'s outcome and deliver arrivals, cascading what ends downstream
        (``skipped``, ``upstream_failed``).

        Each step is one atomic, idempotent ``complete.lua`` call; a crash between steps is
        repaired when the job is delivered again (the script re-reports the ended children).
        ``attempt`` (start's number) makes a stale attempt's report a no-op. ``error`` is a
        failure's error or a skip's reason; ``chosen``, a branch's chosen children.

        Returns:
            False when the report was refused as stale, else True.
        """
        specs, ttl_s = self.plan.specs, self.plan.ttl_s
        picked = None if chosen is None else tuple(chosen)
        todo = [(node, scripts.Report(outcome, output, error, traceback, attempt, picked))]
        while todo:
            name, report = todo.pop()
            spec = specs[name]
            children = [specs[c] for c in spec.children]
            done = scripts.complete(
                self.connection,
                self.run_id,
                spec,
                children,
                report,
                ttl_s=ttl_s,
                version=self.plan.hash,
            )
            if done.run_state == "stale":
                log.warning(
                    "run %s: node %s attempt %s reported after a later attempt started; refused",
                    self.run_id,
                    name,
                    report.attempt,
                )
                return False
            todo += [(child, scripts.Report(state)) for child, state in done.ended]
        self._replicated()
        return True

    def record_items(
        self,
        spec: NodeSpec,
        *,
        results: Sequence[tuple[int, bytes]] = (),
        errors: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Record item results and final item failures of mapped node ``spec`` (``items.lua``);
        the call that records the last item ends the node, and its skips cascade."""
        specs = self.plan.specs
        done = scripts.record_items(
            self.connection,
            self.run_id,
            spec,
            [specs[c] for c in spec.children],
            ttl_s=self.plan.ttl_s,
            version=self.plan.hash,
            results=results,
            errors=errors,
        )
        self._replicated()
        for child, state in done.ended:
            self.deliver(child, state)

    def items_total(self, node: str) -> int:
        """How many items a mapped node expanded into (0 before its expansion)."""
        return int(self.connection.hget(keys.nodes_key(self.run_id), f"{node}:items_total") or 0)

    def read_chunk(self, spec: NodeSpec, indices: Sequence[int]) -> ChunkInputs:
        """Everything one item job of mapped node ``spec`` reads, in one atomic step
        (``chunk.lua``): the run's state, params and plan hash, the item count, the items at
        ``indices`` (a map over a map reads its source's results) and the other data parents'
        outputs. Counts the items it is about to run (their executions)."""
        source = self.plan.specs[spec.map_over or ""]
        others = [p for p in spec.data_parents if p != source.name]
        items_key = (
            keys.items_key(self.run_id, spec.name)
            if source.map_over is None
            else keys.map_results_key(self.run_id, source.name)
        )
        state, params, plan_hash, total, items, outputs = scripts.read_chunk(
            self.connection, self.run_id, spec.name, items_key, indices, others
        )
        return ChunkInputs(
            state=state,
            params=json.loads(params or "{}"),
            plan_hash=plan_hash,
            total=total,
            items=items,
            outputs=dict(zip(others, outputs, strict=True)),
        )

    def store_items(self, node: str, blobs: Sequence[bytes], batch: int) -> None:
        """Store the serialized items a mapped node runs over, ``batch`` per round trip."""
        items_key = keys.items_key(self.run_id, node)
        for start in range(0, len(blobs), batch):
            chunk = {str(i): blobs[i] for i in range(start, min(len(blobs), start + batch))}
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.hset(items_key, mapping=chunk)
                pipe.expire(items_key, self.plan.ttl_s)
                pipe.execute()

    def set_items_total(self, node: str, total: int) -> None:
        """Set a mapped node's item count once (before any item job exists; never reset)."""
        self.connection.hsetnx(keys.nodes_key(self.run_id), f"{node}:items_total", total)

    def mark_expanded(self, node: str) -> None:
        """Record that every item job of a mapped node is enqueued."""
        self.connection.hset(keys.nodes_key(self.run_id), f"{node}:expanded", repr(time.time()))

    def node_fields(self) -> dict[str, str]:
        """The nodes hash, decoded (``<node>:<attribute> -> value``)."""
        return _decode(self.connection.hgetall(keys.nodes_key(self.run_id)))

    def recorded_items(self, node: str) -> set[int]:
        """The indices of a mapped node's items whose result or final error is recorded."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hkeys(keys.map_results_key(self.run_id, node))
            pipe.hkeys(keys.map_errors_key(self.run_id, node))
            results, errors = pipe.execute()
        return {int(i) for i in [*results, *errors]}

    def restore_plan(self, plan: Plan) -> None:
        """Store ``plan`` again (a worker that serves the run's version can replace a plan that
        expired or was deleted)."""
        self.connection.set(keys.plan_key(plan.dag, plan.hash), plan.to_json(), ex=plan.ttl_s)
        self._plan = plan

    def unchanged_since(self, node: str, value: str) -> float:
        """Since when ``node`` has shown ``value`` (say its item count) to the caller: the
        time of the first call that saw it; a new value restarts the clock."""
        field, now = f"{self.run_id}:{node}", time.time()
        raw = self.connection.hget(keys.progress_key(), field)
        old, _, since = (raw or b"").decode().partition("|")
        if raw is not None and old == value:
            return float(since)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hset(keys.progress_key(), field, f"{value}|{now!r}")
            pipe.expire(keys.progress_key(), self.plan.ttl_s)
            pipe.execute()
        return now

    def forget_active(self) -> None:
        """Drop the run from the index of runs that may still be running (and the reconciler's
        progress marks of its nodes)."""
        self.connection.zrem(keys.active_runs_key(), self.run_id)
        if self._plan is not None:
            fields = [f"{self.run_id}:{n}" for n in self._plan.specs]
            self.connection.hdel(keys.progress_key(), *fields)

    def lost_node_settled(self, node: str) -> bool:
        """True when a node whose worker was lost needs nothing more: its outcome is
        recorded, or (a mapped node) its items are all enqueued and will end it."""
        state, expanded = self.connection.hmget(
            keys.nodes_key(self.run_id), f"{node}:state", f"{node}:expanded"
        )
        return (state is not None and state.decode() in FINAL_NODE_STATES) or expanded is not None

    # ------------------------------------------------------------ cancel, resume
    def cancel(self, *, wait_s: float = STOP_WAIT_S) -> scripts.Canceled:
        """End the run as ``canceled`` (``cancel.lua``), take its queued jobs out of their
        queues (a mapped node's item and chunk jobs too), stop its running ones, and wait up to
        ``wait_s`` seconds until none of them runs any more.

        Safe to repeat: what a cancel that died half-way left to do is recorded in the run,
        and a second call does it.

        Raises:
            RunNotFound: the run does not exist.
        """
        done = scripts.cancel(self.connection, self.run_id)
        if done.run_state == "gone":
            raise self._not_found()
        if done.run_state != "canceled":
            return done
        conn, run_id = self.connection, self.run_id
        rqjobs.cancel_jobs(conn, [keys.job_id(run_id, n) for n in done.queued])
        specs = self.plan.specs.values()
        mapped = sorted({self.plan.rq_queue(s.queue_name) for s in specs if s.map_over})
        running = [keys.job_id(run_id, n) for n in done.running]
        if mapped:
            running += rqjobs.started_jobs(conn, mapped, keys.job_id(run_id, ""))
        rqjobs.stop_jobs(conn, running)
        deadline = time.monotonic() + wait_s
        while running and time.monotonic() < deadline:
            time.sleep(0.05)
            running = rqjobs.still_started(conn, running)
        if running:
            log.warning("run %s canceled; %s still running after %s s", run_id, running, wait_s)
        if mapped:  # after the stop: an expansion still running enqueues more item jobs
            scripts.purge(conn, run_id, mapped)
        conn.hdel(keys.run_key(run_id), "canceling")
        return done

    def resume(self) -> None:
        """Reset an ended run's failed, skipped and canceled nodes and their descendants, then
        deliver their finished parents again (rebuilding the join contexts).

        The parents to deliver are recorded (``resuming``) in the transaction that resets the
        nodes, so a resume cut short by a crash is finished by calling this again.

        Raises:
            RunError: the run is still running, or changed while being resumed.
        """
        plan = self.plan
        run_key, nodes_key = keys.run_key(self.run_id), keys.nodes_key(self.run_id)
        with self.connection.pipeline() as pipe:
            try:
                pipe.watch(run_key, nodes_key)
                state, resuming = pipe.hmget(run_key, "state", "resuming")
                if state == b"running" and resuming is not None:
                    pipe.unwatch()
                    return self._redeliver(json.loads(resuming))
                if state == b"running":
                    raise RunError(
                        f"run {self.run_id} is still running; wait for it to end or cancel it first"
                    )
                raw = pipe.hgetall(nodes_key)
                again = (b"failed", b"upstream_failed", b"skipped", b"canceled")
                redo: set[str] = {n for n in plan.specs if raw.get(f"{n}:state".encode()) in again}
                for n in list(redo):
                    redo |= nx.descendants(plan.graph, n)
                if not redo:
                    return None
                order = [n for n in plan.specs if n in redo]  # topological
                sources = sorted({p for n in order for p in plan.specs[n].parents if p not in redo})
                pipe.multi()
                self._reset(pipe, order)
                pipe.hset(run_key, "resuming", json.dumps(sources))
                rqjobs.create_node_jobs(
                    self.connection, pipe, plan, self.run_id, [plan.specs[n] for n in order]
                )
                pipe.execute()
            except WatchError:
                raise RunError(
                    f"run {self.run_id} changed while it was being resumed; try again"
                ) from None
        return self._redeliver(sources)

    def repin(self, plan: Plan) -> None:
        """Pin the run to version ``plan`` of its DAG (``dagrq upgrade``; the caller moves
        its jobs): store the plan, set the run's version and its nodes' queues, and say so in
        its events, in one transaction.

        Raises:
            RunNotFound: the run does not exist.
        """
        run_key, now = keys.run_key(self.run_id), repr(time.time())
        if not self.exists():
            raise self._not_found()
        with self.connection.pipeline(transaction=True) as pipe:
            ttl = max(plan.ttl_s, self.plan.ttl_s)
            pipe.set(keys.plan_key(plan.dag, plan.hash), plan.to_json(), ex=ttl)
            pipe.hset(run_key, "plan", plan.hash)
            queues = {f"{n}:queue": s.queue_name for n, s in plan.specs.items()}
            pipe.hset(keys.nodes_key(self.run_id), mapping=queues)
            event = {"node": "", "state": "running", "ts": now, "version": plan.hash}
            pipe.xadd(keys.events_key(self.run_id), event)
            rqjobs.register_queues(pipe, plan.rq_queues)
            pipe.execute()
        self._plan = plan

    def _redeliver(self, sources: list[str]) -> None:
        """Deliver the resume's finished parents again, then clear the ``resuming`` record."""
        for parent in sources:
            self.deliver(parent, "succeeded")
        self.connection.hdel(keys.run_key(self.run_id), "resuming")

    def _reset(self, pipe: Any, order: list[str]) -> None:
        """On ``pipe`` (in MULTI): every key and field of the nodes in ``order`` back to a
        fresh run's, and the run ``running`` again."""
        plan, run_id, now = self.plan, self.run_id, repr(time.time())
        nodes_key = keys.nodes_key(run_id)
        for name in order:
            spec = plan.specs[name]
            root = spec.starts_at_submit
            pipe.delete(
                keys.output_key(run_id, name),
                keys.join_key(run_id, name),
                keys.inputs_key(run_id, name),
                keys.job_key(run_id, name),
                keys.items_key(run_id, name),
                keys.map_results_key(run_id, name),
                keys.map_errors_key(run_id, name),
            )
            pipe.hdel(nodes_key, *(f"{name}:{f}" for f in _RESET_FIELDS))
            state = {f"{name}:state": "queued" if root else "pending"}
            if root:
                state[f"{name}:queued"] = now
            _fire_always(pipe, run_id, [spec], plan.ttl_s)
            pipe.hset(nodes_key, mapping=state)
            rqjobs.forget_failures(
                self.connection, pipe, plan.rq_queue(spec.queue_name), keys.job_id(run_id, name)
            )
        pipe.hset(
            keys.run_key(run_id), mapping={"state": "running", "pending": len(order), "failed": 0}
        )
        pipe.hdel(keys.run_key(run_id), "ended_at", "damaged")
        pipe.zadd(keys.active_runs_key(), {run_id: float(now)})
        pipe.xadd(keys.events_key(run_id), {"node": "", "state": "running", "ts": now})
        pipe.expire(keys.events_key(run_id), plan.ttl_s)

    def _not_found(self) -> RunNotFound:
        return RunNotFound(
            f"run {self.run_id!r} not found in this Redis; check the id and --url "
            "(runs expire after their DAG's ttl_s)"
        )
