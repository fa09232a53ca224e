"""Waits and events on Redis: park a node, signal it, read its signals, link child runs, and
the event stream (docs/waits.md).

A parked node is ``waiting`` with its reason and, when it has one, a due time in
``dagrq:timers`` (:data:`~dagrq.store.keys.TIMERS_KEY`); any worker's claim moves what is
due (``claim.lua``). A signal is kept in the node's list until its worker checks it
(``signal.lua``); each gets an answer in the run's replies hash. A child run names its parent
node in its run hash (``parent``), and its end wakes that node (``_lib.lua``'s run_over).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, cast

from redis.exceptions import ResponseError

from ..cluster import home_shard
from ..model.plan import NodeSpec, Plan
from ..model.waits import PARK_MIN_S, start_due
from . import keys, runkeys, scripts

#: what ``park.lua`` answered
Parked = Literal["parked", "again", "stale", "ended"]
#: what ``signal.lua`` answered: the node was woken (now, or within a second), kept the value
#: for later, had ended, its run is not live, or there is no such run or node
Sent = Literal["woken", "soon", "kept", "ended", "run", "gone"]


@dataclass(frozen=True)
class Signal:
    """One signal kept for a wait node: its id and its value (any JSON value)."""

    id: str
    value: Any


def park(
    connection: Any,
    plan: Plan,
    run_id: str,
    spec: NodeSpec,
    attempt: int,
    *,
    due: float | None,
    reason: str,
    record: dict[str, Any],
) -> Parked:
    """Park ``spec``'s attempt ``attempt`` (``park.lua``): the node waits with ``reason``
    until ``due`` (unix seconds; None: until a signal or a child run wakes it); ``record``
    (since, pokes, ...) is kept as its wait record for its next attempt."""
    rq_queue = plan.rq_queue(spec.queue_name)
    reply = scripts.run_script(
        connection,
        "park",
        keys=[
            runkeys.run_key(run_id),
            runkeys.nodes_key(run_id),
            runkeys.events_key(run_id),
            keys.TIMERS_KEY,
            runkeys.signals_key(run_id, spec.name),
        ],
        args=[
            spec.name,
            attempt,
            repr(time.time()),
            "" if due is None else int(due * 1000),
            reason,
            json.dumps(record),
            keys.job_id(run_id, spec.name),
            keys.queue_key(rq_queue),
            keys.doorbell_key(rq_queue),
            spec.priority,
        ],
    )
    return cast(Parked, _text(reply))


def delay_field(spec: NodeSpec, params: dict[str, Any] | Any) -> str:
    """A delayed node's ``dagrq_delay`` job field: ``{a: start_after ms, nb: not_before unix
    ms}`` (``complete.lua`` parks it when it fires; docs/waits.md)."""
    nb = start_due(None, spec.not_before, 0.0, params) if spec.not_before else None
    return json.dumps({"a": int((spec.start_after or 0) * 1000), "nb": int((nb or 0) * 1000)})


def timed_roots(
    plan: Plan, run_id: str, params: Any, now: float
) -> dict[str, tuple[dict[str, Any], str, int]]:
    """The roots of a new run whose start is delayed a second or more: per root, its node
    fields (``waiting`` for its timer), its waiter (the timers' member) and its due (ms)."""
    out = {}
    for spec in plan.specs.values():
        if not spec.starts_at_submit or not (spec.start_after or spec.not_before):
            continue
        due = start_due(spec.start_after, spec.not_before, now, params)
        if due is None or due - now < PARK_MIN_S:
            continue
        rq_queue = plan.rq_queue(spec.queue_name)
        member = json.dumps(
            {
                "id": keys.job_id(run_id, spec.name),
                "q": keys.queue_key(rq_queue),
                "b": keys.doorbell_key(rq_queue),
                "n": runkeys.nodes_key(run_id),
                "e": runkeys.events_key(run_id),
                "node": spec.name,
                "p": spec.priority,
            }
        )
        due_ms, name = int(due * 1000), spec.name
        fields = {
            f"{name}:state": "waiting",
            f"{name}:queued": repr(now),
            f"{name}:waiting": "timer",
            f"{name}:due": due_ms,
            f"{name}:wait": json.dumps({"start_due": due, "since": now}),
            f"{name}:parked": f"{keys.TIMERS_KEY}\n{member}",
            f"{name}:parked_ms": int(now * 1000),
        }
        out[name] = (fields, member, due_ms)
    return out


def send(connection: Any, run_id: str, node: str, value: Any) -> tuple[Sent, str, str]:
    """Send ``value`` to wait node ``node`` (``signal.lua``): (what was done, the node's or
    run's state where it says, the signal's id)."""
    signal_id = uuid.uuid4().hex[:12]
    reply = scripts.run_script(
        connection,
        "signal",
        keys=[
            runkeys.run_key(run_id),
            runkeys.nodes_key(run_id),
            runkeys.signals_key(run_id, node),
            runkeys.replies_key(run_id),
        ],
        args=[node, json.dumps({"id": signal_id, "value": value}), signal_id, repr(time.time())],
    )
    state = _text(reply[1]) if len(reply) > 1 else ""
    return cast(Sent, _text(reply[0])), state, signal_id


def signals(connection: Any, run_id: str, node: str) -> list[Signal]:
    """The signals kept for ``node``, oldest first."""
    raw = connection.lrange(runkeys.signals_key(run_id, node), 0, -1)
    out = []
    for item in raw:
        entry = json.loads(item)
        out.append(Signal(str(entry["id"]), entry.get("value")))
    return out


def answer(connection: Any, run_id: str, node: str, answers: dict[str, str], drop: int) -> None:
    """Record each checked signal's answer (``accepted`` or ``refused: why``) and drop the
    first ``drop`` signals of ``node``'s list (those checked), in one transaction."""
    with connection.pipeline(transaction=True) as pipe:
        if answers:
            pipe.hset(runkeys.replies_key(run_id), mapping=answers)
        if drop:
            pipe.ltrim(runkeys.signals_key(run_id, node), drop, -1)
        pipe.execute()


def reply_to(connection: Any, run_id: str, signal_id: str) -> str | None:
    """The answer to signal ``signal_id`` so far (``pending``, ``accepted``, ``refused: ...``)."""
    got = connection.hget(runkeys.replies_key(run_id), signal_id)
    return None if got is None else _text(got)


# ------------------------------------------------------------------ child runs
def parent_field(run_id: str, node: str) -> str:
    """The ``parent`` field of a child run of ``run_id``'s node ``node`` (what its end wakes)."""
    return json.dumps({"n": runkeys.nodes_key(run_id), "node": node, "run": run_id})


def children(connection: Any, run_id: str, node: str) -> dict[int, str]:
    """The child runs of ``run_id``'s sub-DAG node ``node``: item -> child run id."""
    out: dict[int, str] = {}
    for field, child in connection.hgetall(runkeys.children_key(run_id)).items():
        name, _, item = _text(field).partition("#")
        if name == node:
            out[int(item)] = _text(child)
    return out


def all_children(connection: Any, run_id: str) -> list[str]:
    """Every child run of ``run_id`` (of all its sub-DAG nodes)."""
    return [_text(c) for c in connection.hvals(runkeys.children_key(run_id))]


def child_guard_key(run_id: str) -> str:
    """The key a new child run is written under (watched: one child per node and item)."""
    return runkeys.children_key(run_id)


def child_field(node: str, item: int) -> str:
    """The field of ``run_id``'s children hash that names the child for ``node``'s ``item``."""
    return f"{node}#{item}"


def link_child(pipe: Any, run_id: str, node: str, item: int, child: str, ttl_s: int) -> None:
    """On ``pipe``: record ``child`` as the run of ``node``'s ``item``."""
    pipe.hset(runkeys.children_key(run_id), child_field(node, item), child)
    pipe.expire(runkeys.children_key(run_id), ttl_s)


def run_states(connection: Any, run_ids: Sequence[str]) -> list[str | None]:
    """The states of ``run_ids`` (None for a run that is gone), in one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        for run_id in run_ids:
            pipe.hget(runkeys.run_key(run_id), "state")
        return [None if s is None else _text(s) for s in pipe.execute()]


# ------------------------------------------------------------------ events
def emit(connection: Any, name: str, data: Any, key: str | None = None) -> tuple[str, bool]:
    """Append event ``name`` with ``data`` (JSON) to the event stream (``emit.lua``): its id
    and True, or, for a dedup ``key`` already seen (7 days), the first event's id and False.
    On a Redis Cluster it goes to the first shard's stream, whichever shard ``connection``
    serves, so a key is seen once across the cluster."""
    reply = scripts.run_script(
        home_shard(connection),
        "emit",
        keys=[keys.EVENTS_KEY, keys.event_key_key(name, key or "")],
        args=[name, json.dumps(data), key or "", repr(time.time())],
    )
    return _text(reply[0]), _text(reply[1]) == "1"


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def subscribe(connection: Any, dag: str) -> None:
    """Make DAG ``dag``'s consumer group of the event stream, if it has none: it reads the
    events emitted from now on."""
    make_group(connection, keys.EVENTS_KEY, keys.event_group(dag))


def make_group(connection: Any, stream: str, group: str) -> None:
    """Make consumer group ``group`` of ``stream`` (and the stream), if it has none: it reads
    the entries added from now on."""
    try:
        connection.xgroup_create(stream, group, id="$", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


def read_group(
    connection: Any, stream: str, group: str, consumer: str, *, count: int, idle_ms: int
) -> list[tuple[str, dict[str, str]]]:
    """Entries of ``stream`` for ``group``: first those another reader took ``idle_ms`` ago
    and never acknowledged (it died), then new ones; ``(id, fields)`` each, to be
    acknowledged (``XACK``) once handled."""
    _, stale, *_ = connection.xautoclaim(
        stream, group, consumer, idle_ms, start_id="0-0", count=count
    )
    fresh = connection.xreadgroup(group, consumer, {stream: ">"}, count=count)
    entries = list(stale) + [e for _, batch in fresh for e in batch]
    return [
        (_text(entry_id), {_text(k): _text(v) for k, v in fields.items()})
        for entry_id, fields in entries
        if fields  # an entry trimmed from the stream meanwhile has none
    ]


@dataclass(frozen=True)
class Emitted:
    """One event read from the stream: its id, name, data (decoded JSON) and dedup key."""

    id: str
    name: str
    data: Any
    key: str | None


def read_events(
    connection: Any, dag: str, consumer: str, *, count: int = 50, idle_ms: int = 60_000
) -> list[Emitted]:
    """Events for DAG ``dag``'s group: first those another reader took ``idle_ms`` ago and
    never acknowledged (it died), then new ones; each is to be :func:`acknowledged`."""
    entries = read_group(
        connection, keys.EVENTS_KEY, keys.event_group(dag), consumer, count=count, idle_ms=idle_ms
    )
    return [
        Emitted(event_id, f["name"], json.loads(f["data"]), f.get("key") or None)
        for event_id, f in entries
    ]


def acknowledged(connection: Any, dag: str, event_id: str) -> None:
    """Mark ``event_id`` as handled for DAG ``dag`` (it is not read again)."""
    connection.xack(keys.EVENTS_KEY, keys.event_group(dag), event_id)
