"""``run_local``: a whole DAG in this process, without Redis, as one dagrq worker would run it.

The same validation, trigger rules, argument building and serialization round trip as a
distributed run (every output goes through the DAG's codec and back into the child's
annotation), in one deterministic order: the order in which a single ``dagrq worker``
serving the DAG runs its jobs. Jobs wait in one queue per RQ queue name; the worker takes the
oldest job of the first non-empty queue, queues in name order (the DAG's queue, then each
join's); roots (and ``always`` nodes) are queued at submit in topological order; a node's
children hear its outcome in name order, and a child is queued when its rule fires. A node
fired early (``one_success``, ``quorum`` ...) gets ``None`` for the parents that had not
arrived then, as on the worker. A failed attempt with retries left goes to the back of its
queue (a backoff is not waited for).

With several workers the order is the workers' race: only nodes fired early can then see
other inputs, and only those whose result depends on it.
"""

from __future__ import annotations

import traceback
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ..errors import RunFailed
from .cache import LOCAL, Cache
from .call import Outcome, call, from_cache, keep, node_key
from .codec import Codec
from .node import (
    Node,
    build_kwargs,
    item_annotation,
    iter_items,
    join_items,
    one_line_error,
    output_annotation,
)
from .plan import NodeSpec, Plan
from .rules import ENDS, decide
from .status import ARRIVALS
from .wait_nodes import call_waiting


@dataclass
class LocalRun:
    """What :func:`simulate` ends with: every node's final state, its reason or error, the
    outputs of the nodes that succeeded, decoded."""

    states: dict[str, str]
    results: dict[str, Any]
    errors: dict[str, str] = field(default_factory=dict)
    reasons: dict[str, str] = field(default_factory=dict)
    chosen: dict[str, tuple[str, ...]] = field(default_factory=dict)


def run_local(
    plan: Plan,
    nodes: Mapping[str, Node[Any, Any]],
    codec: Codec,
    params: Mapping[str, Any],
    cache: Cache | None = None,
    refresh: str = "",
    signals: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Run every node of ``plan`` (see the module) and return the outputs of those that
    succeeded.

    Args:
        plan: the validated plan.
        nodes: the :class:`~dagrq.model.node.Node` of every spec.
        codec: the DAG's codec.
        params: validated run parameters (JSON-ready, as stored at submit).
        cache: where cached nodes' entries are (the same keys as a worker's); None: the
            process-wide :data:`dagrq.model.cache.LOCAL`.
        refresh: the nodes whose cache is ignored and overwritten (``*``: all), as stored.
        signals: the value of each wait node (``dag.wait``); timers and sensors wait here.

    Returns:
        ``{node: output}`` for the nodes that succeeded, decoded into their return types.

    Raises:
        RunFailed: when a node failed; ``.failed`` maps node to error, ``.results`` holds
            the outputs of the nodes that succeeded, ``.states`` every node's state.
    """
    run = simulate(plan, nodes, codec, params, cache, refresh, signals)
    if run.errors:
        problem = RunFailed("local", run.errors)
        problem.results = run.results  # type: ignore[attr-defined]
        problem.states = run.states  # type: ignore[attr-defined]
        raise problem
    return run.results


def simulate(
    plan: Plan,
    nodes: Mapping[str, Node[Any, Any]],
    codec: Codec,
    params: Mapping[str, Any],
    cache: Cache | None = None,
    refresh: str = "",
    signals: Mapping[str, Any] | None = None,
) -> LocalRun:
    """Run ``plan`` as one worker would (see the module); never raises for a node's failure."""
    worker = _Worker(plan, nodes, codec, params)
    worker.cache, worker.refresh = cache or LOCAL, refresh.split(",")
    worker.signals = signals or {}
    return worker.run()


class _Worker:
    """One simulated worker and the run's state."""

    def __init__(
        self,
        plan: Plan,
        nodes: Mapping[str, Node[Any, Any]],
        codec: Codec,
        params: Mapping[str, Any],
    ) -> None:
        self.plan, self.nodes, self.codec, self.params = plan, nodes, codec, params
        self.specs = plan.specs
        self.queues: dict[str, deque[tuple[str, int | None]]] = {
            q: deque() for q in sorted({s.queue_name for s in self.specs.values()})
        }
        self.state = {
            n: "queued" if s.starts_at_submit else "pending" for n, s in self.specs.items()
        }
        self.arrived: dict[str, dict[str, str]] = {n: {} for n in self.specs}
        #: per node that fired, its parents' outcomes then (None: read what exists)
        self.inputs: dict[str, dict[str, str] | None] = {}
        self.outputs: dict[str, bytes] = {}
        self.attempts: dict[str, int] = {}
        self.items: dict[str, list[bytes | None]] = {}
        self.item_errors: dict[str, list[str]] = {}
        self.items_left: dict[str, int] = {}
        self.run_state = LocalRun(states={}, results={})
        self.cache: Cache = LOCAL
        self.refresh: list[str] = []
        #: the values of wait nodes (``run_local(signals=...)``)
        self.signals: Mapping[str, Any] = {}
        for name, spec in self.specs.items():
            if spec.starts_at_submit:
                self.inputs[name] = {} if spec.parents else None
                self._push(name)

    def _push(self, name: str, chunk: int | None = None) -> None:
        self.queues[self.specs[name].queue_name].append((name, chunk))

    def run(self) -> LocalRun:
        while any(self.queues.values()):
            queue = next(q for q in self.queues.values() if q)
            name, chunk = queue.popleft()
            if chunk is None:
                self._node(name)
            else:
                self._chunk(name, chunk)
        out = self.run_state
        out.states = dict(self.state)
        out.results = {
            n: self.codec.loads(self.outputs[n], output_annotation(self.nodes[n]))
            for n in self.specs
            if self.state[n] in ("succeeded", "cached")
        }
        return out

    # ------------------------------------------------------------------ nodes
    def _read(self, spec: NodeSpec) -> dict[str, bytes | None]:
        """The node's inputs as stored: a plain parent's output if it had succeeded when the
        node fired, a mapped parent's results (``None`` at a failed item) if it had arrived
        then, as ``start.lua`` and ``RunStore.read_inputs`` read them."""
        fired = self.inputs.get(spec.name)
        return {
            p: self.outputs.get(p)
            for p in spec.data_parents
            if fired is None
            or fired.get(p) == "succeeded"
            or (self.specs[p].map_over is not None and p in fired)
        }

    def _kwargs(self, spec: NodeSpec) -> dict[str, Any]:
        """The node's inputs, decoded."""
        outputs = self._read(spec)
        return build_kwargs(self.nodes[spec.name], spec, outputs, self.params, self.codec)

    def _cached(
        self, spec: NodeSpec, outputs: Mapping[str, bytes | None], inputs: Any, item: bytes | None
    ) -> tuple[str | None, Outcome | None]:
        """The key of a call (None: not cached) and its hit (None: a miss), as a worker's."""
        node = self.nodes[spec.name]
        key = node_key(
            node, spec, self.plan.dag, self.codec.name, outputs, self.params, inputs, item=item
        )
        if key is None or "*" in self.refresh or spec.name in self.refresh:
            return key, None
        return key, from_cache(node, self.codec, self.cache.get(spec.name, key))

    def _node(self, name: str) -> None:
        spec, node = self.specs[name], self.nodes[name]
        if self.state[name] not in ("queued", "running"):
            return
        self.state[name] = "running"
        self.attempts[name] = self.attempts.get(name, 0) + 1
        if spec.map_over is None:
            inputs = partial(self._kwargs, spec)
            key, hit = self._cached(spec, self._read(spec), inputs, None)
            if spec.wait or spec.start_after or spec.not_before:
                outcome = call_waiting(node, spec, self.codec, inputs, self.signals, self.params)
            else:
                outcome = hit or call(node, spec, self.codec, inputs)
            keep(self.cache, spec, key, outcome, "local")
        else:
            try:
                return self._expand(spec)
            except Exception as exc:  # its source's output is no list, say: a failure
                outcome = Outcome("failed", error=exc)
        if outcome.state == "failed":
            self._forget(outcome)
            if self.attempts[name] <= spec.retries:
                self.state[name] = "queued"
                self._push(name)  # RQ's retry: to the back of the queue
                return
            self.run_state.errors[name] = one_line_error(outcome.error or Exception())
        elif outcome.state == "skipped":
            self.run_state.reasons[name] = outcome.reason
        else:  # succeeded, or cached
            self.outputs[name] = outcome.output
            if outcome.chosen is not None:
                self.run_state.chosen[name] = self.plan.followed(name, outcome.chosen)
        self._finish(name, outcome.state)

    @staticmethod
    def _forget(outcome: Outcome) -> None:
        """Drop a failure's frames (its locals would live as long as the run)."""
        if outcome.error is not None:
            traceback.clear_frames(outcome.error.__traceback__)

    def _finish(self, name: str, state: str) -> None:
        """Record a final state and deliver it, cascading what ends, as ``store.deliver``
        does (a stack: the last child to end is delivered first)."""
        todo = [(name, state)]
        while todo:
            node, outcome = todo.pop()
            self.state[node] = outcome
            todo += self._deliver(node, outcome)

    def _deliver(self, parent: str, outcome: str) -> list[tuple[str, str]]:
        """One ``complete.lua`` step: each child hears ``outcome`` (a branch sends
        ``skipped`` to the children it did not choose), in name order."""
        chosen = self.run_state.chosen.get(parent)
        ended: list[tuple[str, str]] = []
        for child in self.specs[parent].children:
            if self.state[child] != "pending":
                continue
            if chosen is not None and child not in chosen:  # not followed: skipped outright
                self.state[child] = "skipped"
                ended.append((child, "skipped"))
                continue
            got = "succeeded" if outcome == "cached" else outcome
            arrived = self.arrived[child]
            arrived.setdefault(parent, got)
            spec = self.specs[child]
            counts = {o: sum(1 for a in arrived.values() if a == o) for o in ARRIVALS}
            decision = decide(spec.rule, total=len(spec.parents), **counts)
            if decision == "fire":  # it reads the parents that had succeeded when it fired
                self.state[child] = "queued"
                self.inputs[child] = dict(arrived)
                self._push(child)
            elif decision in ENDS:
                self.state[child] = ENDS[decision]
                ended.append((child, ENDS[decision]))
        return ended

    # ------------------------------------------------------------------ maps
    def _expand(self, spec: NodeSpec) -> None:
        source = self.specs[spec.map_over or ""]
        if source.map_over is None:
            total = len(iter_items(self.codec, self._source_output(spec, source), source.name))
        else:
            total = len(self.items.get(source.name, []))
        self.items[spec.name] = [None] * total
        self.item_errors[spec.name] = []
        if total == 0:
            self.outputs[spec.name] = join_items(self.codec, [])
            self._finish(spec.name, "succeeded")
            return
        self.items_left[spec.name] = total
        for c in range(spec.chunks(total)):
            self._push(spec.name, c)

    def _source_output(self, spec: NodeSpec, source: NodeSpec) -> bytes | None:
        """The output a mapped node maps over, if its source had succeeded when it fired."""
        fired = self.inputs.get(spec.name)
        ok = fired is None or fired.get(source.name) == "succeeded"
        return self.outputs.get(source.name) if ok else None

    def _item_values(self, spec: NodeSpec) -> list[Any]:
        source = self.specs[spec.map_over or ""]
        if source.map_over is None:
            return iter_items(self.codec, self._source_output(spec, source), source.name)
        return [None if b is None else self.codec.loads(b, None) for b in self.items[source.name]]

    def _chunk(self, name: str, chunk: int) -> None:
        spec, node = self.specs[name], self.nodes[name]
        values = self._item_values(spec)
        kwargs = self._kwargs(spec)
        shared = {p: b for p, b in self._read(spec).items() if p != spec.map_over}
        annotation = item_annotation(node)
        for index in spec.chunk_items(chunk, len(values)):
            stored = self.codec.dumps(values[index])
            item = self.codec.loads(stored, annotation)
            inputs = {**kwargs, spec.map_over or "": item}
            blob, error = None, None
            key, hit = self._cached(spec, shared, partial(dict, inputs), stored)
            for _ in range(1 + spec.retries):  # an item's retries run before the next item's
                outcome = hit or call(node, spec, self.codec, partial(dict, inputs))
                if outcome.state == "succeeded" and outcome.output != self.codec.dumps(None):
                    keep(self.cache, spec, key, outcome, "local")
                if outcome.state != "failed":  # a skipped item's result is None
                    skipped = outcome.state == "skipped"
                    blob, error = self.codec.dumps(None) if skipped else outcome.output, None
                    break
                self._forget(outcome)
                error = one_line_error(outcome.error or Exception())
            self.items[name][index] = blob
            if error is not None:
                self.item_errors[name].append(f"item {index}: {error}")
            self.items_left[name] -= 1
        if self.items_left[name] == 0:
            self.outputs[name] = join_items(self.codec, self.items[name])
            errors = self.item_errors[name]
            if errors:
                total = len(self.items[name])
                self.run_state.errors[name] = (
                    f"{len(errors)} of {total} items failed; first: {errors[0]}"
                )
                self._finish(name, "failed")
            else:
                self._finish(name, "succeeded")
