"""Flow control on Redis: the gate a limited node's job carries, pools, and the sweep that
frees a slot whose attempt is gone.

Where each limit lives (all under ``dagrq:flow:``; docs/flow-control.md has the semantics):

- a pool ``pool:<name>`` and a node's own limit ``node:<dag>.<node>[:<key>]`` are hashes:
  ``size``, ``used``, ``kind`` and a field ``h:<job id>`` -> slots per holder; the line of
  jobs waiting for it is the sorted set ``<key>:wait`` (higher priority first, then first
  come), each member the JSON a waiter needs to go back on its queue;
- a rate limit ``rate:<name>`` is a sorted set of the starts within its window, its line
  ``<key>:wait``; ``due`` says when each rate line may move;
- ``runs:<dag>`` is the set of running runs of a DAG with ``max_active_runs``, its queued
  runs in ``runs:<dag>:queue``;
- ``limits`` lists every limit that has held or parked anything.

A limited node's RQ job carries its gate (``dagrq_gate``, written at submit): ``claim.lua``
takes its slots, or parks it; the steps that end an attempt (``complete.lua``,
``requeue.lua``, ``cancel.lua``, ``start.lua`` refusing) give them back and let the next
waiters in, in the same atomic step (``_lib.lua``'s ``release``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..model.flow import DEFAULT_POOL_SIZE, NAME, gate_of
from ..model.plan import NodeSpec, Plan
from . import keys, runkeys, scripts


def gate_field(
    plan: Plan, run_id: str, spec: NodeSpec, params: Mapping[str, Any], priority: int
) -> str | None:
    """The ``dagrq_gate`` JSON of ``spec``'s job in ``run_id`` (None: the node has no limit),
    as ``claim.lua`` reads it: its node, nodes hash, events, queue, doorbell and priority,
    the slots it takes ``[key, size (0: a pool, sized in Redis), slots, label, kind, keyed]``
    (keyed: 1 for one value of a ``concurrency_key``, deleted when unused), its
    rate limit ``[key, count, period ms, label]``, and where its concurrency key is read
    ``[output key, field]`` when it is a parent's output."""
    if not spec.limited:
        return None
    g = gate_of(
        plan.dag,
        spec.name,
        concurrency=spec.concurrency,
        concurrency_key=spec.concurrency_key,
        pool=spec.pool,
        pool_slots=spec.pool_slots,
        rate_limit=spec.rate_limit,
        priority=spec.priority,
        params=dict(params),
        run_priority=priority,
    )
    queue = plan.rq_queue(spec.queue_name)
    out: dict[str, Any] = {
        "node": spec.name,
        "n": runkeys.nodes_key(run_id),
        "e": runkeys.events_key(run_id),
        "q": keys.queue_key(queue),
        "b": keys.doorbell_key(queue),
        "p": g.priority,
        "slots": [
            [
                keys.pool_key(s.name) if s.kind == "pool" else keys.node_limit_key(s.name),
                s.size or 0,
                s.slots,
                s.label,
                s.kind,
                1 if spec.concurrency_key and s.kind == "node" else 0,
            ]
            for s in g.slots
        ],
    }
    if g.rate is not None:
        label = str(g.rate) if g.rate.name else f"{g.rate} of {g.rate_name}"
        out["rate"] = [keys.rate_key(g.rate_name), g.rate.count, g.rate.period_s * 1000, label]
    if g.key_from is not None:
        parent, field_name = g.key_from
        out["kf"] = [runkeys.output_key(run_id, parent), field_name]
    return json.dumps(out)


def roots_field(plan: Plan, run_id: str, specs: Iterable[NodeSpec], priority: int) -> str:
    """The run hash's ``roots`` field for ``admit.lua``: ``[[job id, queue key, doorbell,
    node, priority], ...]`` of the nodes that start when the run does."""
    roots = []
    for spec in specs:
        queue = plan.rq_queue(spec.queue_name)
        prio = max(-1000, min(1000, spec.priority + priority))
        job = keys.job_id(run_id, spec.name)
        roots.append([job, keys.queue_key(queue), keys.doorbell_key(queue), spec.name, prio])
    return json.dumps(roots)


def admit(connection: Any, pipe: Any, plan: Plan, run_id: str, priority: int) -> None:
    """On ``pipe`` (in MULTI): start the new run's roots, or queue the run when its DAG's
    ``max_active_runs`` is reached (``admit.lua``)."""
    scripts.run_script(
        connection,
        "admit",
        pipe=pipe,
        keys=[
            runkeys.run_key(run_id),
            runkeys.nodes_key(run_id),
            runkeys.events_key(run_id),
            keys.active_set_key(plan.dag),
        ],
        args=[run_id, repr(time.time()), plan.max_active_runs or 0, priority],
    )


def set_pool(connection: Any, name: str, size: int | None) -> tuple[int, int]:
    """Size pool ``name`` (None: back to the default, :data:`DEFAULT_POOL_SIZE`); waiters are
    let in at once when it grew. Returns ``(size, used)``.

    Raises:
        ValueError: a bad name or a negative size.
    """
    if not NAME.match(name):
        raise ValueError(f"pool name {name!r}: use letters, digits, '_', '.' and '-'")
    if size is not None and (isinstance(size, bool) or not isinstance(size, int) or size < 0):
        raise ValueError(f"pool {name!r}: size must be a whole number >= 0, not {size!r}")
    reply = scripts.run_script(
        connection,
        "pool_size",
        keys=[keys.pool_key(name)],
        args=["" if size is None else size, repr(time.time())],
    )
    return int(reply[0]), int(reply[1])


@dataclass(frozen=True)
class Holder:
    """One attempt holding slots of a limit (or one waiting for them)."""

    run_id: str
    node: str
    slots: int


@dataclass(frozen=True)
class Limit:
    """A pool, a node's concurrency limit or a rate limit, as ``dagrq pools`` shows it."""

    kind: str  # pool | node | rate
    name: str
    size: int  # slots (a rate limit: starts per period)
    used: int  # slots held (a rate limit: starts in the current window)
    sized: bool = True  # False: a pool never sized (the default size applies)
    period_s: int = 0
    holders: list[Holder] = field(default_factory=list)
    waiting: list[Holder] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (``dagrq pools --json``)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "size": self.size,
            "used": self.used,
            "default_size": not self.sized,
            "period_s": self.period_s or None,
            "holders": [h.__dict__ for h in self.holders],
            "waiting": [h.__dict__ for h in self.waiting],
        }


def holder_of(job_id: str) -> tuple[str, str]:
    """``(run id, node)`` of a dagrq job id.

    Examples:
        >>> holder_of("dagrq-abc-report")
        ('abc', 'report')
    """
    rest = job_id.removeprefix(keys.PREFIX + "-")
    run_id, _, node = rest.partition("-")
    return run_id, node


def limits(connection: Any, pools: Iterable[str] = ()) -> list[Limit]:
    """Every limit that has held or parked anything, and the pools named in ``pools`` (a DAG
    declares them) even if unused, with holders and waiters; pools first, by name."""
    names = {_text(k) for k in connection.smembers(keys.FLOW_LIMITS_KEY)}
    names |= {keys.pool_key(p) for p in pools}
    out = [_limit(connection, key) for key in sorted(names)]
    order = {"pool": 0, "node": 1, "rate": 2}
    return sorted((x for x in out if x is not None), key=lambda x: (order[x.kind], x.name))


def _limit(connection: Any, key: str) -> Limit | None:
    line = [_waiter(m) for m in connection.zrange(key + ":wait", 0, 99)]
    if key.startswith(keys.rate_key("")):
        with connection.pipeline() as pipe:
            pipe.zremrangebyscore(key, "-inf", time.time() * 1000 - 3600_000)
            pipe.zrange(key + ":wait", 0, 0)
            _, first = pipe.execute()
        period = json.loads(first[0])["ms"] // 1000 if first else 0
        now_ms = time.time() * 1000
        used = connection.zcount(key, now_ms - period * 1000, "+inf") if period else 0
        count = json.loads(first[0])["c"] if first else 0
        return Limit(
            "rate", key.removeprefix(keys.rate_key("")), count, used, True, period, [], line
        )
    fields = {_text(k): _text(v) for k, v in connection.hgetall(key).items()}
    pool = key.startswith(keys.pool_key(""))
    if not fields and not pool:
        return None
    holders = [
        Holder(*holder_of(k.removeprefix("h:")), int(v))
        for k, v in sorted(fields.items())
        if k.startswith("h:")
    ]
    name = key.removeprefix(keys.pool_key("") if pool else keys.node_limit_key(""))
    size = int(fields.get("size", DEFAULT_POOL_SIZE))
    return Limit(
        "pool" if pool else "node",
        name,
        size,
        int(fields.get("used", 0)),
        "size" in fields or not pool,
        0,
        holders,
        line,
    )


def _waiter(member: bytes | str) -> Holder:
    w = json.loads(member)
    return Holder(holder_of(w["id"])[0], w["node"], int(w.get("s", 1)))


def held_by(connection: Any, reason: str, most: int = 5) -> str | None:
    """Who holds the limit a ``waiting`` node's ``reason`` names (``waiting for pool
    warehouse: ...`` or ``... concurrency orders.load:acme: ...``): ``<run>/<node>, ...`` (the
    first ``most``, run ids cut to 8), or None for a rate limit or nobody.

    Examples:
        >>> held_by(None, "waiting for rate limit 5/s of d.n: next start in 0.1 s") is None
        True
    """
    text = reason.removeprefix("waiting for ")
    kind, _, rest = text.partition(" ")
    name = rest.split(": ", 1)[0]
    if kind == "pool":
        key = keys.pool_key(name)
    elif kind == "concurrency":
        key = keys.node_limit_key(name)
    else:
        return None
    holders = [holder_of(_text(f)[2:]) for f in connection.hkeys(key) if _text(f).startswith("h:")]
    if not holders:
        return None
    shown = ", ".join(f"{run[:8]}/{node}" for run, node in holders[:most])
    return shown + (f" and {len(holders) - most} more" if len(holders) > most else "")


def free_orphans(connection: Any) -> list[tuple[str, str]]:
    """Give back every slot whose attempt is gone (its node ended, its run ended or expired)
    and let waiters in (``free_slot.lua``, fenced by the holder's node state); forget limits
    that hold nothing and have nobody waiting. Returns what was freed, ``(limit key, job id)``."""
    freed: list[tuple[str, str]] = []
    for raw in connection.smembers(keys.FLOW_LIMITS_KEY):
        key = _text(raw)
        if key.startswith(keys.rate_key("")):
            continue
        for field_name in connection.hkeys(key):
            name = _text(field_name)
            if not name.startswith("h:"):
                continue
            job_id = name[2:]
            run_id, node = holder_of(job_id)
            done = scripts.run_script(
                connection,
                "free_slot",
                keys=[key, runkeys.nodes_key(run_id), runkeys.run_key(run_id)],
                args=[job_id, node, repr(time.time())],
            )
            if int(done):
                freed.append((key, job_id))
    return freed


def free_runs(connection: Any) -> list[str]:
    """Take out of their DAG's active set the runs that no longer run (expired, or ended by
    a path that did not say so) and start queued runs in their place (``free_run.lua``).
    Returns the runs taken out."""
    freed: list[str] = []
    for raw_key, raw_max in connection.hgetall(keys.FLOW_RUNSETS_KEY).items():
        key, limit = _text(raw_key), _text(raw_max)
        for raw_run in connection.smembers(key):
            run_id = _text(raw_run)
            done = scripts.run_script(
                connection,
                "free_run",
                keys=[runkeys.run_key(run_id)],
                args=[key, limit, run_id, repr(time.time())],
            )
            if int(done):
                freed.append(run_id)
    return freed


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
