"""Waiting nodes on a worker: delayed starts, signals, sensors' pokes and sub-DAGs' child runs.

None of them holds the worker while it waits: the attempt *parks* the node
(:func:`dagrq.store.waits.park`) and returns; the node's job runs again when its timer is due,
a signal comes or a child run ends, and this module looks again (docs/waits.md). What the
kinds mean is :mod:`dagrq.model.waits`'s.
"""

from __future__ import annotations

import logging
import time
from typing import Any, cast

from ..errors import ChildRunFailed, ParameterError, SignalRefused, WaitTimedOut
from ..model.codec import type_adapter
from ..model.node import build_kwargs, one_line_error, serialize_output
from ..model.waits import (
    PARK_MIN_S,
    SignalBody,
    SubdagBody,
    Waiting,
    sensor_reason,
    signal_reason,
    start_due,
    subdag_reason,
    timed_out,
    timer_reason,
)
from ..store import lifecycle, waits
from ..store.runs import RunStore
from .attempt import Attempt, Summary

log = logging.getLogger(__name__)

#: a sub-DAG node parked for its children looks again this often even when no child's end
#: woke it (a wake lost in a failover costs a minute, not the run)
SUBDAG_RECHECK_S = 60.0
#: a run state after which a child run changes no more
_ENDED = ("succeeded", "failed", "canceled")


def delayed(attempt: Attempt) -> Summary | None:
    """Park a node whose start is delayed (``start_after=``, ``not_before=``, ``dag.sleep``)
    until its due time, or None to run it now (its time has come; a due time under
    :data:`~dagrq.model.waits.PARK_MIN_S` away is slept here)."""
    spec, record = attempt.spec, attempt.record
    due = record.get("start_due")
    if due is None:
        ready = attempt.queued or time.time()
        due = start_due(spec.start_after, spec.not_before, ready, attempt.params)
    left = (due or 0) - time.time()
    if due is None or left <= 0:
        return None
    if left < PARK_MIN_S:
        time.sleep(left)
        return None
    record["start_due"] = due
    return _park(attempt, due, timer_reason(due))


def _park(attempt: Attempt, due: float | None, reason: str) -> Summary | None:
    """Park the attempt's node (None when news came meanwhile: the caller looks again)."""
    record = attempt.record
    record.setdefault("since", time.time())
    got = waits.park(
        attempt.store.connection,
        attempt.dag.plan,
        attempt.store.run_id,
        attempt.spec,
        attempt.number,
        due=due,
        reason=reason,
        record=record,
    )
    if got == "again":
        return None
    return {"node": attempt.spec.name, "outcome": "waiting" if got == "parked" else got}


def _fail(attempt: Attempt, error: BaseException) -> Summary:
    """End the node ``failed`` with ``error`` (no retry: waiting again would not help)."""
    text = one_line_error(error)
    attempt.store.log_error(attempt.spec.name, attempt.number, text)
    attempt.store.deliver(attempt.spec.name, "failed", error=text, attempt=attempt.number)
    return {"node": attempt.spec.name, "outcome": "failed", "error": text}


def _succeed(attempt: Attempt, value: Any) -> Summary:
    output = serialize_output(attempt.dag.codec, attempt.spec, value)
    fresh = attempt.store.deliver(
        attempt.spec.name, "succeeded", output=output, attempt=attempt.number
    )
    return {"node": attempt.spec.name, "outcome": "succeeded" if fresh else "refused"}


# ------------------------------------------------------------------ sensors
def poke_again(attempt: Attempt) -> Summary | None:
    """A sensor's poke returned None: park it until its next poke, or fail it past its
    timeout (:class:`~dagrq.errors.WaitTimedOut`). None: poke again now."""
    waiting = Waiting.parse(attempt.spec.wait or "")
    record, now = attempt.record, time.time()
    since = record.setdefault("since", now)
    record["pokes"] = pokes = int(record.get("pokes", 0)) + 1
    if timed_out(waiting, since, now + (waiting.every_s or 0)):
        return _fail(
            attempt,
            WaitTimedOut(
                f"sensor {attempt.spec.name!r} timed out after {waiting.timeout_s:g} s "
                f"({pokes} pokes returned None); raise timeout= or check what it senses"
            ),
        )
    due = now + (waiting.every_s or PARK_MIN_S)
    return _park(attempt, due, sensor_reason(attempt.spec.name, pokes, since, due, waiting))


# ------------------------------------------------------------------ signals
def run_signal(attempt: Attempt) -> Summary:
    """A wait node (``dag.wait``): end it with the first kept signal its type accepts (each
    signal gets its answer), end it by its ``on_timeout`` rule past its timeout, or park it."""
    spec, store = attempt.spec, attempt.store
    body = cast(SignalBody, attempt.dag.nodes[spec.name].fn)
    waiting = Waiting.parse(spec.wait or "")
    conn, run_id = store.connection, store.run_id
    while True:
        since = attempt.record.setdefault("since", time.time())
        kept = waits.signals(conn, run_id, spec.name)
        answers: dict[str, str] = {}
        for i, signal in enumerate(kept):
            try:
                value = body.accept(signal.value)
            except SignalRefused as exc:
                answers[signal.id] = f"refused: {exc}"
                continue
            done = _succeed(attempt, value)  # first: an answer is never ahead of the outcome
            answers[signal.id] = "accepted"
            for later in kept[i + 1 :]:
                answers[later.id] = f"refused: node {spec.name!r} ended with an earlier signal"
            waits.answer(conn, run_id, spec.name, answers, drop=len(kept))
            return done
        waits.answer(conn, run_id, spec.name, answers, drop=len(kept))
        if timed_out(waiting, since, time.time()):
            return _timed_out(attempt, body, waiting)
        due = since + waiting.timeout_s if waiting.timeout_s is not None else None
        parked = _park(attempt, due, signal_reason(spec.name, waiting, since))
        if parked is not None:
            return parked


def _timed_out(attempt: Attempt, body: SignalBody, waiting: Waiting) -> Summary:
    spec = attempt.spec
    said = f"wait {spec.name!r} timed out after {waiting.timeout_s:g} s without a valid signal"
    if waiting.on_timeout == "skip":
        attempt.store.deliver(spec.name, "skipped", error=said, attempt=attempt.number)
        return {"node": spec.name, "outcome": "skipped", "reason": said}
    if waiting.on_timeout == "value":
        value = type_adapter(body.type).validate_json(waiting.default or "null")
        log.info("%s; ending with its on_timeout value", said)
        return _succeed(attempt, value)
    return _fail(attempt, WaitTimedOut(f"{said}; send one sooner or raise timeout="))


# ------------------------------------------------------------------ sub-DAGs
def run_subdag(attempt: Attempt) -> Summary:
    """A sub-DAG node: submit its child runs (up to ``max_children`` at once), end with
    their results when all succeeded, fail when one failed or was canceled, else park until
    a child run ends (its end wakes this node)."""
    spec, store = attempt.spec, attempt.store
    node = attempt.dag.nodes[spec.name]
    body = cast(SubdagBody, node.fn)
    waiting = Waiting.parse(spec.wait or "")
    outputs = store.read_inputs(spec, attempt.outputs)
    inputs = build_kwargs(node, spec, outputs, attempt.params, attempt.dag.codec)
    items = [None] if waiting.map_over is None else list(inputs.get(waiting.map_over) or [])
    while True:
        since = attempt.record.setdefault("since", time.time())
        made = waits.children(store.connection, store.run_id, spec.name)
        order = sorted(made)
        states = dict(
            zip(order, waits.run_states(store.connection, [made[i] for i in order]), strict=True)
        )
        for i in order:
            if states[i] in ("failed", "canceled", None):
                what = "is gone" if states[i] is None else states[i]
                where = f" (item {i})" if waiting.map_over is not None else ""
                return _fail(
                    attempt,
                    ChildRunFailed(
                        f"child run {made[i]} of DAG {waiting.dag!r}{where} {what}; see "
                        f"dagrq why {made[i]}"
                    ),
                )
        running = sum(1 for s in states.values() if s not in _ENDED)
        room = (waiting.max_children or 1) - running
        for i in range(len(items)):
            if i not in made and room > 0:
                try:
                    _submit_child(attempt, body, inputs, i, items[i])
                except ParameterError as exc:
                    return _fail(attempt, exc)
                room, running = room - 1, running + 1
        if len(made) == len(items) and all(states.get(i) == "succeeded" for i in range(len(items))):
            results = [_child_result(store, body, waiting, made[i]) for i in range(len(items))]
            return _succeed(attempt, results if waiting.map_over is not None else results[0])
        done = sum(1 for s in states.values() if s == "succeeded")
        reason = subdag_reason(waiting, running, done, len(items), since)
        parked = _park(attempt, time.time() + SUBDAG_RECHECK_S, reason)
        if parked is not None:
            return parked


def _submit_child(
    attempt: Attempt, body: SubdagBody, inputs: dict[str, Any], item: int, value: Any
) -> None:
    """Write the child run of ``item`` (exactly once: under a guard on the parent's children)."""
    store, spec, child = attempt.store, attempt.spec, body.dag
    params = child.validate_params(body.child_params(inputs, value))
    key = waits.child_guard_key(store.run_id)
    field = waits.child_field(spec.name, item)
    mapped = body.waiting.map_over is not None
    made = lifecycle.create_if(
        store.connection,
        child.plan,
        params,
        lifecycle.Guard(
            watch=[key],
            allowed=lambda pipe: not pipe.hexists(key, field),
            write=lambda pipe, run_id: waits.link_child(
                pipe, store.run_id, spec.name, item, run_id, attempt.dag.plan.ttl_s
            ),
        ),
        name=f"{attempt.dag.name}.{spec.name}" + (f"[{item}]" if mapped else ""),
        trigger=f"subdag {store.run_id} {spec.name}" + (f"#{item}" if mapped else ""),
        parent=waits.parent_field(store.run_id, spec.name),
    )
    if made is not None:
        log.info("run %s: node %s started child run %s", store.run_id, spec.name, made.run_id)


def _child_result(store: RunStore, body: SubdagBody, waiting: Waiting, child_id: str) -> Any:
    child = body.dag
    result = waiting.result or child.sinks[0]
    blob = RunStore(store.connection, child_id, child.plan).output(result)
    if blob is None:
        raise ChildRunFailed(f"child run {child_id} has no output of node {result!r}")
    return child.codec.loads(blob, None)
