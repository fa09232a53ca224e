"""A run's reads and an attempt's atomic steps: one handle, :class:`RunStore`, per
``(connection, run id, plan)``.

Reads: the run's meta and state, its status, a node's output (a mapped node's joined), its
events and its nodes' logs. Steps an attempt takes: start, deliver (cascading what ends),
requeue, and a map's expansion and items. Each step is a Lua script of
:mod:`dagrq.store.scripts`. Writes that change a run's life (create, cancel, resume, re-pin)
are :mod:`dagrq.store.lifecycle`'s; the reconciler's queries are
:mod:`dagrq.store.repairs`'s. Callers above never spell a key.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from ..errors import RunError, RunNotFound
from ..model.codec import get_codec
from ..model.node import join_items
from ..model.plan import NodeSpec, Plan
from ..model.status import FINAL_NODE_STATES, RunStatus, parse_status
from . import nodelogs, objects, rqjobs, runkeys, scripts
from .nodelogs import Capture, LogEntry
from .outage import ride_out

#: how many replicas must hold each step before a worker goes on (``WAIT``; 0: none)
WAIT_REPLICAS_ENV = "DAGRQ_WAIT_REPLICAS"
#: how long a step waits for them, in milliseconds
WAIT_MS_ENV = "DAGRQ_WAIT_MS"
#: the longest a blocking read waits on the server: under redis-py's default socket timeout
#: (5 s), which would end a longer block with a TimeoutError
BLOCK_MS_MAX = 4000
#: the run states after which a run's event stream has nothing more to say
FINAL_RUN_STATES = ("succeeded", "failed", "canceled")

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
        raw = connection.get(runkeys.plan_key(dag, plan_hash))
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
    #: per item: its result is recorded already (a resume kept it): it is not run again
    recorded: list[bool]
    outputs: dict[str, bytes | None]
    #: the run ignores (and overwrites) this node's cache
    refresh: bool = False


@dataclass
class Peeked:
    """What :meth:`RunStore.peek` read."""

    run_state: str | None
    params: dict[str, Any]
    plan_hash: str | None
    refresh: str
    node_state: str | None
    outputs: dict[str, bytes | None]


def _opt_text(value: bytes | None) -> str | None:
    return None if value is None else value.decode()


def _decode(raw: Mapping[bytes, bytes]) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in raw.items()}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


F = TypeVar("F", bound=Callable[..., Any])


def _steady(method: F) -> F:
    """An attempt's step: with the store's ``outage_s`` set, tried again through a Redis
    outage of up to that long (:func:`dagrq.store.outage.ride_out`)."""

    @functools.wraps(method)
    def step(self: RunStore, *args: Any, **kwargs: Any) -> Any:
        if not self.outage_s:
            return method(self, *args, **kwargs)
        what = f"{method.__name__} of run {self.run_id}"
        return ride_out(what, lambda: method(self, *args, **kwargs), self.outage_s)

    return step  # type: ignore[return-value]


class RunStore:
    """One run's keys on one connection, read and written through the run's plan.

    Args:
        connection: a ``redis.Redis``.
        run_id: the run token.
        plan: the plan the run is pinned to; ``None`` reads it from Redis when first needed.
    """

    def __init__(
        self, connection: Any, run_id: str, plan: Plan | None = None, *, outage_s: float = 0.0
    ) -> None:
        self.connection = connection
        self.run_id = run_id
        self._plan = plan
        #: an attempt's steps ride out a Redis outage of up to this long (0: they raise)
        self.outage_s = outage_s
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

    def capture_logs(self, node: str, attempt: int, item: int | None = None) -> Capture:
        """A context that captures a node body's stdout, stderr and logging into the node's
        log in this run (see :mod:`dagrq.store.nodelogs`)."""
        return Capture(self.connection, self.run_id, node, attempt, self.plan.ttl_s, item)

    def log_error(self, node: str, attempt: int, error: str, item: int | None = None) -> None:
        """End ``node``'s log of ``attempt`` with the error that ended it (a line of stream
        ``error``), so its logs say how each failed attempt ended."""
        capture = Capture(self.connection, self.run_id, node, attempt, self.plan.ttl_s, item)
        capture.started = True  # the line names its attempt: no second header
        capture.add("error", error)
        capture.flush()

    # ------------------------------------------------------------------- reads
    def exists(self) -> bool:
        """True while the run's hash exists (submitted, not expired)."""
        return bool(self.connection.exists(runkeys.run_key(self.run_id)))

    def meta(self) -> dict[str, str]:
        """The run hash, decoded.

        Raises:
            RunNotFound: the run does not exist (never submitted, or expired).
        """
        raw = self.connection.hgetall(runkeys.run_key(self.run_id))
        if not raw:
            raise self.not_found()
        return _decode(raw)

    def state(self) -> str | None:
        """The run's state, or None when the run does not exist."""
        raw = self.connection.hget(runkeys.run_key(self.run_id), "state")
        return raw.decode() if raw is not None else None

    def trace_parent(self) -> str | None:
        """The W3C ``traceparent`` the submitter's trace context was stored as (``trace``
        field; docs/observability.md), or None for a run submitted without tracing."""
        raw = self.connection.hget(runkeys.run_key(self.run_id), "trace")
        return raw.decode() if raw else None

    def trace_context(self, parents: Sequence[str]) -> tuple[str | None, dict[str, int]]:
        """The stored ``traceparent`` (see :meth:`trace_parent`) and each of ``parents``'
        attempts so far, in one round trip (a traced node's span links its parents')."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hget(runkeys.run_key(self.run_id), "trace")
            pipe.hmget(runkeys.nodes_key(self.run_id), [f"{p}:attempts" for p in parents] or ["-"])
            trace, counts = pipe.execute()
        attempts = {p: int(n) for p, n in zip(parents, counts, strict=False) if n}
        return (trace.decode() if trace else None), attempts

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

    def pin(self, plan: Plan) -> None:
        """Read and write the run through ``plan`` from now on (after a re-pin)."""
        self._plan = plan

    def plan_or_none(self, meta: Mapping[str, str]) -> Plan | None:
        """The run's plan, or None when it cannot be read (expired, or a damaged run)."""
        if self._plan is None:
            try:
                self._plan = load_plan(self.connection, meta["dag"], meta["plan"])
            except (RunError, KeyError):  # RunNotFound is a RunError too
                return None
        return self._plan

    def status(self) -> RunStatus:
        """The run's state and every node's state, attempts, timings and error, and its
        sub-DAG nodes' child runs (one MULTI/EXEC read of the run, node and children hashes).

        Raises:
            RunNotFound: the run does not exist.
        """
        with self.connection.pipeline(transaction=True) as pipe:
            pipe.hgetall(runkeys.run_key(self.run_id))
            pipe.hgetall(runkeys.nodes_key(self.run_id))
            pipe.hgetall(runkeys.children_key(self.run_id))
            raw_meta, raw_nodes, raw_children = pipe.execute()
        if not raw_meta:
            raise self.not_found()
        meta = _decode(raw_meta)
        plan = self.plan_or_none(meta)
        status = parse_status(self.run_id, meta, _decode(raw_nodes), plan)
        for field, child in sorted(
            _decode(raw_children).items(), key=lambda fc: int(fc[0].rpartition("#")[2] or 0)
        ):
            node = status.nodes.get(field.rpartition("#")[0])
            if node is not None:
                node.children.append(child)
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
        raw = self.connection.hget(runkeys.nodes_key(self.run_id), f"{node}:state")
        return raw.decode() if raw is not None else None

    def attempts(self, node: str) -> int:
        """How many attempts of ``node`` have started."""
        raw = self.connection.hget(runkeys.nodes_key(self.run_id), f"{node}:attempts")
        return int(raw or 0)

    def output(self, node: str) -> bytes | None:
        """A node's stored output (a mapped node's: the list of its item results), or None
        when it has none (not succeeded, or expired)."""
        spec = self.plan.specs.get(node)
        if spec is not None and spec.map_over is not None:
            if self.node_state(node) != "succeeded":
                return None
            return self.read_mapped(node)
        blob: bytes | None = self.connection.get(runkeys.output_key(self.run_id, node))
        return blob

    def read_mapped(self, node: str) -> bytes | None:
        """A mapped node's results as one serialized list, in item order (``None`` where an
        item failed; ``None`` for a map that never expanded)."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hget(runkeys.nodes_key(self.run_id), f"{node}:items_total")
            pipe.hgetall(runkeys.map_results_key(self.run_id, node))
            total, results = pipe.execute()
        if total is None:
            return None
        codec = get_codec(self.plan.serializer)
        return join_items(codec, [results.get(str(i).encode()) for i in range(int(total))])

    @_steady
    def read_inputs(
        self, spec: NodeSpec, outputs: Mapping[str, bytes | None]
    ) -> dict[str, bytes | None]:
        """``outputs`` with each mapped data parent's results joined into one list (``None``
        at each failed item, so a node fired by ``all_done`` after a failed map receives what
        its items gave): read when that parent had arrived when the node fired (the fired-with
        set says so, when there is one); else ``None``, as for a plain parent that had not."""
        specs = self.plan.specs
        mapped = [
            p for p in spec.data_parents if specs[p].map_over is not None and p != spec.map_over
        ]
        if not mapped:
            return dict(outputs)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.exists(runkeys.inputs_key(self.run_id, spec.name))
            pipe.hmget(runkeys.inputs_key(self.run_id, spec.name), mapped)
            fired_with, arrived = pipe.execute()
        read = [p for p, a in zip(mapped, arrived, strict=True) if not fired_with or a is not None]
        return {**outputs, **dict.fromkeys(mapped), **{p: self.read_mapped(p) for p in read}}

    def read_events(self, after: str = "0-0", block_ms: int | None = None) -> list[dict[str, str]]:
        """The run's events after entry id ``after`` (oldest first, at most 1,000), blocking
        up to ``block_ms`` (at most :data:`BLOCK_MS_MAX`) for the first when there is none yet
        (``XREAD``); each has its ``id``."""
        block = None if block_ms is None else min(block_ms, BLOCK_MS_MAX)
        reply = self.connection.xread(
            {runkeys.events_key(self.run_id): after}, count=1000, block=block
        )
        if not reply:
            return []
        return [{"id": _text(raw_id), **_decode(fields)} for raw_id, fields in reply[0][1]]

    def last_event_id(self) -> str:
        """The id of the run's newest event (``0-0`` when none): read before a status, the
        events after it are what a reader of that status has not seen."""
        newest = self.connection.xrevrange(runkeys.events_key(self.run_id), count=1)
        return _text(newest[0][0]) if newest else "0-0"

    def events(
        self, *, follow: bool = True, block_ms: int = 1000, after: str = "0-0"
    ) -> Iterator[dict[str, Any]]:
        """The run's state changes after entry id ``after``, oldest first (see
        :meth:`dagrq.client.Run.events`)."""
        last = after
        while True:
            batch = self.read_events(last, block_ms if follow else None)
            if not batch:
                state = self.state()
                if not follow or state is None or state in FINAL_RUN_STATES:
                    return
                continue
            for event in batch:
                last = event["id"]
                yield event
                if follow and event.get("node") == "" and event.get("state") in FINAL_RUN_STATES:
                    return

    def logs(
        self,
        nodes: Sequence[str],
        *,
        attempt: int | None = None,
        follow: bool = False,
        block_ms: int = 1000,
    ) -> Iterator[LogEntry]:
        """What ``nodes`` printed and logged (of ``attempt`` when given), oldest first; with
        ``follow``, new lines as they come until the run has ended (one more read after its
        end, so its last lines are out)."""
        wanted = (lambda e: True) if attempt is None else (lambda e: e.attempt == attempt)
        if not follow:
            yield from filter(wanted, nodelogs.read(self.connection, self.run_id, nodes))
            return
        ending = False
        for entry in nodelogs.follow(self.connection, self.run_id, nodes, block_ms=block_ms):
            if entry is not None:
                if wanted(entry):
                    yield entry
            elif ending:
                return
            else:
                ending = self.state() in FINAL_RUN_STATES

    # ------------------------------------------------------------ atomic steps
    @_steady
    def start(self, spec: NodeSpec) -> scripts.Started:
        """Begin an attempt of ``spec`` (``start.lua``)."""
        started = scripts.start(self.connection, self.run_id, spec, self.plan.ttl_s, self.plan.hash)
        self._replicated()
        return started

    @staticmethod
    def peeked(spec: NodeSpec, fields: Mapping[str, bytes]) -> Peeked:
        """What a cache check at claim time needs of ``spec``, from what ``claim.lua`` read
        with the claim (its ``~`` fields, named without the ``~``): the run's state, params,
        version and refresh list, the node's state, and the data parents' outputs as
        ``start.lua`` would read them (only those that had succeeded when the node fired,
        when it has a fired-with set)."""
        fired = {k.removeprefix("fired:"): v for k, v in fields.items() if k.startswith("fired:")}
        outs = {p: fields.get(f"out:{p}") for p in spec.data_parents}
        if fired:  # only the parents that had succeeded when it fired, as start.lua reads
            outs = {p: o if fired.get(p) == b"succeeded" else None for p, o in outs.items()}
        return Peeked(
            run_state=_opt_text(fields.get("state")),
            params=json.loads(fields.get("params") or "{}"),
            plan_hash=_opt_text(fields.get("plan")),
            refresh=_opt_text(fields.get("refresh")) or "",
            node_state=_opt_text(fields.get("node")),
            outputs=outs,
        )

    @_steady
    def requeue(self, node: str, error: str, attempt: int = 0, traceback: str = "") -> bool:
        """Show ``node`` as ``queued`` again: RQ will retry it (``requeue.lua``), keeping the
        failed attempt's error and traceback; False when the attempt is stale or the node no
        longer runs."""
        done = scripts.requeue(self.connection, self.run_id, node, error, attempt, traceback)
        self._replicated()
        return done

    @_steady
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
        picked, output = None if chosen is None else tuple(chosen), self._kept(node, output)
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

    @_steady
    def record_items(
        self,
        spec: NodeSpec,
        *,
        results: Sequence[tuple[int, bytes]] = (),
        errors: Sequence[tuple[int, str]] = (),
    ) -> None:
        """Record item results and final item failures of mapped node ``spec`` (``items.lua``);
        the call that records the last item ends the node, and its skips cascade."""
        specs, results = self.plan.specs, [(i, self._kept(spec.name, b)) for i, b in results]
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

    @_steady
    def items_total(self, node: str) -> int:
        """How many items a mapped node expanded into (0 before its expansion)."""
        return int(self.connection.hget(runkeys.nodes_key(self.run_id), f"{node}:items_total") or 0)

    @_steady
    def read_chunk(self, spec: NodeSpec, indices: Sequence[int]) -> ChunkInputs:
        """Everything one item job of mapped node ``spec`` reads, in one atomic step
        (``chunk.lua``): the run's state, params and plan hash, the item count, the items at
        ``indices`` (a map over a map reads its source's results) and the other data parents'
        outputs. Counts the items it is about to run (their executions)."""
        source = self.plan.specs[spec.map_over or ""]
        others = [p for p in spec.data_parents if p != source.name]
        items_key = (
            runkeys.items_key(self.run_id, spec.name)
            if source.map_over is None
            else runkeys.map_results_key(self.run_id, source.name)
        )
        state, params, plan_hash, total, refresh, items, recorded, outputs = scripts.read_chunk(
            self.connection, self.run_id, spec.name, items_key, indices, others
        )
        return ChunkInputs(
            state=state,
            params=json.loads(params or "{}"),
            plan_hash=plan_hash,
            total=total,
            refresh=refresh == "*" or spec.name in refresh.split(","),
            items=items,
            recorded=recorded,
            outputs=dict(zip(others, outputs, strict=True)),
        )

    @_steady
    def store_items(self, node: str, blobs: Sequence[bytes], batch: int) -> None:
        """Store the serialized items a mapped node runs over, ``batch`` per round trip."""
        items_key = runkeys.items_key(self.run_id, node)
        blobs = [self._kept(node, b) for b in blobs]
        for start in range(0, len(blobs), batch):
            chunk = {str(i): blobs[i] for i in range(start, min(len(blobs), start + batch))}
            with self.connection.pipeline(transaction=False) as pipe:
                pipe.hset(items_key, mapping=chunk)
                pipe.expire(items_key, self.plan.ttl_s)
                pipe.execute()

    @_steady
    def set_items_total(self, node: str, total: int) -> None:
        """Set a mapped node's item count once (before any item job exists; never reset)."""
        self.connection.hsetnx(runkeys.nodes_key(self.run_id), f"{node}:items_total", total)

    @_steady
    def mark_expanded(self, node: str) -> None:
        """Record that every item job of a mapped node is enqueued."""
        self.connection.hset(runkeys.nodes_key(self.run_id), f"{node}:expanded", repr(time.time()))

    def recorded_items(self, node: str) -> set[int]:
        """The indices of a mapped node's items whose result or final error is recorded."""
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hkeys(runkeys.map_results_key(self.run_id, node))
            pipe.hkeys(runkeys.map_errors_key(self.run_id, node))
            results, errors = pipe.execute()
        return {int(i) for i in [*results, *errors]}

    def lost_node_settled(self, node: str) -> bool:
        """True when a node whose worker was lost needs nothing more: its outcome is
        recorded, or (a mapped node) its items are all enqueued and will end it."""
        state, expanded = self.connection.hmget(
            runkeys.nodes_key(self.run_id), f"{node}:state", f"{node}:expanded"
        )
        return (state is not None and state.decode() in FINAL_NODE_STATES) or expanded is not None

    def _kept(self, node: str, blob: bytes) -> bytes:
        """What Redis keeps of ``node``'s value: ``blob``, or a reference to its object."""
        return objects.kept(self.plan, self.run_id, node, blob)

    def not_found(self) -> RunNotFound:
        """The error for this run not being in this Redis, naming the fix."""
        return RunNotFound(
            f"run {self.run_id!r} not found in this Redis; check the id and --url "
            "(runs expire after their DAG's ttl_s)"
        )
