"""Run parts of an ended run again: :func:`resume` (what failed, and what depends on it),
:func:`clear` (one node and everything downstream of it, Airflow's "clear") and :func:`mark`
(set a node's outcome by hand, with a reason, and run what depends on it again).

All three are one shape: in one MULTI/EXEC (watched, so a run that changes meanwhile is not
half reset) the chosen nodes and their descendants go back to a fresh run's state, their RQ
jobs are made again and the finished parents to deliver are recorded (``resuming``); then
those parents are delivered again through the same atomic arrival step as a first run, which
rebuilds the join contexts. A process that dies half-way is finished by calling any of them
again. Afterwards the run's counters are recounted from its node states (``settle_run.lua``),
so nodes left as they were (a failed one outside what a clear re-runs) still count.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from typing import Any

import networkx as nx
from redis.exceptions import WatchError

from ..errors import RunError
from ..model.codec import get_codec, parse_type_expr
from ..model.plan import NodeSpec
from ..model.status import MARKS
from . import keys, objects, rqjobs, runkeys, scripts
from .lifecycle import fire_always, job_fields
from .runs import RunStore

#: the states a resume runs again (with everything downstream)
AGAIN = ("failed", "upstream_failed", "skipped", "canceled")

#: fields of a node reset when it runs again (its state is set anew)
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
    "wait",
    "waiting",
    "parks",
    "due",
    "wake",
    "parked",
)


def resume(store: RunStore) -> None:
    """Reset an ended run's failed, upstream-failed, skipped and canceled nodes and their
    descendants, then deliver their finished parents again (rebuilding the join contexts).

    Raises:
        RunError: the run is still running, or changed while being resumed.
    """
    _rerun(store, lambda states: {n for n, s in states.items() if s in AGAIN})


def clear(store: RunStore, node: str) -> None:
    """Run ``node`` of an ended run again, and every node downstream of it, whatever their
    outcome; the rest keep theirs (Airflow's "clear" of a task with its downstream).

    Raises:
        RunError: the run is still running, has no node ``node``, or changed meanwhile.
    """
    _known(store, node)
    _rerun(store, lambda states: {node})


def mark(store: RunStore, node: str, outcome: str, reason: str, output: Any = None) -> None:
    """Set ``node``'s outcome in an ended run by hand, ``succeeded`` (its output ``output``,
    None unless given) or ``skipped``, and run every node downstream of it again, which now
    receives that outcome. ``reason`` is kept as the node's reason and in the run's events.

    Raises:
        ValueError: ``outcome`` is not one of :data:`~dagrq.model.status.MARKS`, ``reason``
            is empty, or the node's recorded return type does not read ``output``.
        RunError: the run is still running, has no node ``node``, or changed meanwhile.
    """
    if outcome not in MARKS:
        raise ValueError(f"a node is marked {' or '.join(MARKS)}, not {outcome!r}")
    if not reason.strip():
        raise ValueError(f"say why node {node!r} is marked {outcome} (a reason is kept)")
    _known(store, node)
    blob = _output(store, node, output) if outcome == "succeeded" else b""
    marked = (node, outcome, f"marked {outcome} by hand: {reason.strip()}", blob)
    _rerun(store, lambda states: set(), marked)


def _output(store: RunStore, node: str, output: Any) -> bytes:
    """``output`` serialized as ``node``'s, refused when its recorded type would not read it
    back (a node that returns ``int`` marked succeeded needs an int)."""
    codec, spec = get_codec(store.plan.serializer), store.plan.specs[node]
    blob = codec.dumps(output)
    if spec.returns is not None and spec.map_over is None:
        try:
            codec.loads(blob, parse_type_expr(spec.returns))
        except ValueError as exc:
            raise ValueError(
                f"node {node!r} returns {spec.returns}: give the output it should have "
                f"(output={output!r} is not one: {str(exc).splitlines()[0]})"
            ) from None
    return objects.kept(store.plan, store.run_id, node, blob)


def _known(store: RunStore, node: str) -> None:
    """Refuse a node the run's plan does not have."""
    if node not in store.plan.specs:
        names = ", ".join(list(store.plan.specs)[:10])
        raise RunError(f"run {store.run_id} has no node {node!r} (its nodes: {names})")


Marked = tuple[str, str, str, bytes]


def _rerun(
    store: RunStore,
    pick: Callable[[dict[str, str]], set[str]],
    marked: Marked | None = None,
) -> None:
    # long: one watched transaction, read then write, in order
    """Reset the nodes ``pick`` chooses from the node states (and their descendants; with
    ``marked``, that node's descendants and the node set to its mark), then deliver again."""
    plan = store.plan
    run_key, nodes_key = runkeys.run_key(store.run_id), runkeys.nodes_key(store.run_id)
    with store.connection.pipeline() as pipe:
        try:
            pipe.watch(run_key, nodes_key)
            state, resuming, params, priority = pipe.hmget(
                run_key, "state", "resuming", "params", "priority"
            )
            if state == b"running" and resuming is not None:
                pipe.unwatch()
                return _redeliver(store, json.loads(resuming))
            if state in (b"running", b"queued"):
                raise RunError(
                    f"run {store.run_id} is still running; wait for it to end or cancel it first"
                )
            if state is None:
                raise store.not_found()
            raw = pipe.hgetall(nodes_key)
            states = {n: (raw.get(f"{n}:state".encode()) or b"").decode() for n in plan.specs}
            chosen = pick(states)
            redo: set[str] = set(chosen)
            for n in chosen | ({marked[0]} if marked else set()):
                redo |= nx.descendants(plan.graph, n)
            if not redo and marked is None:
                return None
            order = [n for n in plan.specs if n in redo]  # topological
            sources = sorted({p for n in order for p in plan.specs[n].parents if p not in redo})
            kept = _kept_items(store, pipe, [plan.specs[n] for n in order], redo)
            totals = {
                n: int(raw.get(f"{n}:items_total".encode()) or 0)
                for n in order
                if plan.specs[n].map_over is not None
            }
            others = set(plan.specs) - redo - ({marked[0]} if marked else set())
            failed = sum(1 for n in others if states[n] == "failed")
            pipe.multi()
            _reset(store, pipe, order, kept, totals, failed)
            if marked is not None:
                _set_mark(store, pipe, marked)
            pipe.hset(run_key, "resuming", json.dumps(sources))
            redone = [plan.specs[n] for n in order]
            values, prio = json.loads(params or "{}"), int(priority or 0)
            fields = job_fields(plan, store.run_id, redone, values, prio)
            rqjobs.create_node_jobs(
                store.connection, pipe, plan, store.run_id, redone, fields=fields
            )
            pipe.execute()
        except WatchError:
            raise RunError(
                f"run {store.run_id} changed while it was being changed by hand; try again"
            ) from None
    return _redeliver(store, sources)


def _set_mark(store: RunStore, pipe: Any, marked: Marked) -> None:
    """On ``pipe`` (in MULTI): ``node`` ended with its marked outcome, reason and output."""
    node, outcome, reason, blob = marked
    run_id, now, ttl = store.run_id, repr(time.time()), store.plan.ttl_s
    nodes_key = runkeys.nodes_key(run_id)
    pipe.hdel(nodes_key, *(f"{node}:{f}" for f in _RESET_FIELDS))
    fields = {"state": outcome, "ended": now, "reason": reason}
    pipe.hset(nodes_key, mapping={f"{node}:{k}": v for k, v in fields.items()})
    pipe.delete(runkeys.inputs_key(run_id, node), runkeys.join_key(run_id, node))
    if outcome == "succeeded":
        pipe.set(runkeys.output_key(run_id, node), blob, ex=ttl)
    else:
        pipe.delete(runkeys.output_key(run_id, node))
    event = {"node": node, "state": outcome, "ts": now, "reason": reason}
    pipe.xadd(runkeys.events_key(run_id), event)


def _redeliver(store: RunStore, sources: Iterable[str]) -> None:
    """Deliver the finished parents again (each its recorded outcome), clear the
    ``resuming`` record, and recount the run's counters from its node states (which ends it
    when nothing is left to run: a marked leaf)."""
    for parent in sources:
        store.deliver(parent, "succeeded")
    store.connection.hdel(runkeys.run_key(store.run_id), "resuming")
    scripts.settle_run(store.connection, store.run_id)


def _kept_items(
    store: RunStore, pipe: Any, specs: list[NodeSpec], redo: set[str]
) -> dict[str, int]:
    """The mapped nodes among ``specs`` whose succeeded items a resume keeps, with how many:
    those whose source is not run again (so their items are the same)."""
    mapped = [s.name for s in specs if s.map_over is not None and s.map_over not in redo]
    counts = [pipe.hlen(runkeys.map_results_key(store.run_id, n)) for n in mapped]
    return {n: int(c) for n, c in zip(mapped, counts, strict=True) if c}


def _reset(
    store: RunStore,
    pipe: Any,
    order: list[str],
    kept: dict[str, int],
    totals: dict[str, int],
    failed: int,
) -> None:
    # long: every key and field of a node run again, in one place
    """On ``pipe`` (in MULTI): every key and field of the nodes in ``order`` back to a
    fresh run's, and the run ``running`` again; a mapped node in ``kept`` keeps the results of
    its items that succeeded (and its item count), so only its other items run again; RQ's
    failed and canceled registries forget the nodes' jobs (``totals``: a map's item count).
    ``failed``: the failed nodes left as they are (the run still ends failed for them)."""
    plan, run_id, now = store.plan, store.run_id, repr(time.time())
    nodes_key = runkeys.nodes_key(run_id)
    for name in order:
        spec = plan.specs[name]
        root = spec.starts_at_submit
        gone = [
            runkeys.output_key(run_id, name),
            runkeys.join_key(run_id, name),
            runkeys.inputs_key(run_id, name),
            keys.job_key(run_id, name),
            runkeys.items_key(run_id, name),
            runkeys.map_errors_key(run_id, name),
        ]
        fields = [f"{name}:{f}" for f in _RESET_FIELDS]
        if name in kept:
            fields.remove(f"{name}:items_total")
        else:
            gone.append(runkeys.map_results_key(run_id, name))
        pipe.delete(*gone)
        pipe.hdel(nodes_key, *fields)
        state = {f"{name}:state": "queued" if root else "pending"}
        if name in kept:  # as many items done (and begun) as results kept
            state |= {
                f"{name}:items_done": str(kept[name]),
                f"{name}:items_started": str(kept[name]),
            }
        if root:
            state[f"{name}:queued"] = now
        fire_always(pipe, run_id, [spec], plan.ttl_s)
        pipe.hset(nodes_key, mapping=state)
        jobs = [keys.job_id(run_id, name)]
        if spec.map_over is not None:  # its chunk and item jobs, stopped or failed
            total = totals.get(name, 0)
            jobs += [keys.chunk_job_id(run_id, name, c) for c in range(spec.chunks(total))]
            jobs += [keys.item_job_id(run_id, name, i) for i in range(total)]
        rqjobs.forget_failures(store.connection, pipe, plan.rq_queue(spec.queue_name), jobs)
    again = {"state": "running", "pending": len(order), "failed": failed}
    pipe.hset(runkeys.run_key(run_id), mapping=again)
    pipe.hdel(runkeys.run_key(run_id), "ended_at", "damaged")
    pipe.zadd(keys.active_runs_key(), {run_id: float(now)})
    if plan.max_active_runs is not None:  # counted among its DAG's active runs (not queued)
        pipe.sadd(keys.active_set_key(plan.dag), run_id)
    pipe.xadd(runkeys.events_key(run_id), {"node": "", "state": "running", "ts": now})
    pipe.expire(runkeys.events_key(run_id), plan.ttl_s)
