"""Flow control, the pure part: what a node's limits say, parsed and checked without Redis.

A node may be limited by its own ``concurrency=`` (per DAG, or per value of
``concurrency_key=``), by a shared ``pool=`` (``pool_slots=`` of it), and by a
``rate_limit=``; ``priority=`` (plus the run's) orders its queue. :class:`Gate` is what a
node's limits come to in one run, built at submit from the spec and the run's parameters;
the store turns it into keys and ``claim.lua`` enforces it (see docs/flow-control.md).

Examples:
    >>> RateLimit.parse("100/m")
    RateLimit(name=None, count=100, period_s=60)
    >>> RateLimit.parse("openai:20/s").key_name("orders", "call")
    'openai'
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

#: the size of a pool nobody has sized (``dagrq pools set NAME SIZE``): Airflow's default pool
DEFAULT_POOL_SIZE = 128
#: priorities run from -PRIORITY_MAX to PRIORITY_MAX (a node's plus its run's): Redis keeps
#: the order exact in a sorted set's score with a sequence number below it
PRIORITY_MAX = 1000
#: a rate limit's window is counted at the claim, this much longer than its period, so that
#: windows of body *starts* keep the limit while a claim takes up to this long to start
RATE_MARGIN_MS = 100
#: a pool's (or a rate limit's) name: part of a Redis key
NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,100}$")

_UNITS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600}
_UNITS["hour"] = 3600
_RATE = re.compile(r"^(?:(?P<name>[A-Za-z0-9_.\-]{1,100}):)?(?P<count>\d+)\s*/\s*(?P<unit>[a-z]+)$")


@dataclass(frozen=True)
class RateLimit:
    """``N`` starts per period, over a sliding window (no window of ``period_s`` seconds holds
    more than ``count`` starts); named limits are shared by every node that names them."""

    name: str | None
    count: int
    period_s: int

    @classmethod
    def parse(cls, text: str) -> RateLimit:
        """``"100/m"`` (this node, in every run of its DAG) or ``"NAME:100/m"`` (shared by every
        node, of any DAG, that names it); units ``s``, ``m``, ``h``.

        Raises:
            ValueError: the text says something else (the message shows the form).

        Examples:
            >>> RateLimit.parse("20/s").period_s, RateLimit.parse("api:5 / h").count
            (1, 5)
        """
        match = _RATE.match(text.strip())
        unit = _UNITS.get(match["unit"]) if match else None
        if match is None or unit is None or int(match["count"]) < 1:
            raise ValueError(
                f"rate_limit {text!r} is not N/s, N/m or N/h (optionally NAME:N/unit for a "
                "limit shared by name), with N >= 1"
            )
        return cls(match["name"], int(match["count"]), unit)

    def key_name(self, dag: str, node: str) -> str:
        """The limit's name in Redis: its own name, or ``<dag>.<node>``."""
        return self.name or f"{dag}.{node}"

    def __str__(self) -> str:
        unit = {1: "s", 60: "m", 3600: "h"}[self.period_s]
        return f"{self.name + ':' if self.name else ''}{self.count}/{unit}"


def key_source(text: str) -> tuple[str, str | None]:
    """Where a ``concurrency_key`` comes from: ``("param", None)`` for a run parameter, or
    ``(parent, field)`` for a field of a parent's output.

    Examples:
        >>> key_source("tenant"), key_source("fetch.customer")
        (('tenant', None), ('fetch', 'customer'))
    """
    name, _, field = text.partition(".")
    return name, field or None


def key_text(value: Any) -> str:
    """A key's value as text in a Redis key (bounded; an odd character is kept, a long one cut).

    Examples:
        >>> key_text("acme"), key_text(7), key_text(None)
        ('acme', '7', 'None')
    """
    return str(value)[:200]


@dataclass(frozen=True)
class Slots:
    """One concurrency limit a node takes slots of: a pool, or the node's own limit."""

    kind: str  # "pool" or "node"
    name: str  # the pool's name, or "<dag>.<node>[:<key>]"
    size: int | None  # None: a pool, sized in Redis (default DEFAULT_POOL_SIZE)
    slots: int

    @property
    def label(self) -> str:
        """How ``why`` names it."""
        return f"pool {self.name}" if self.kind == "pool" else f"concurrency {self.name}"


@dataclass(frozen=True)
class Gate:
    """What one node's limits come to in one run: the slots it takes, the rate limit it
    counts against, and its priority. ``key_from`` is ``(parent, field)`` when the node's
    concurrency key is read from a parent's output when the node is claimed."""

    slots: tuple[Slots, ...] = ()
    rate: RateLimit | None = None
    rate_name: str = ""
    priority: int = 0
    key_from: tuple[str, str] | None = None


def gate_of(
    dag: str,
    node: str,
    *,
    concurrency: int | None,
    concurrency_key: str | None,
    pool: str | None,
    pool_slots: int,
    rate_limit: str | None,
    priority: int,
    params: dict[str, Any],
    run_priority: int = 0,
) -> Gate:
    """The :class:`Gate` of node ``node`` in a run with ``params`` (a spec's flow fields).

    Examples:
        >>> g = gate_of("d", "n", concurrency=2, concurrency_key="tenant", pool="wh",
        ...             pool_slots=1, rate_limit=None, priority=1, params={"tenant": "a"})
        >>> [s.name for s in g.slots], g.priority
        (['wh', 'd.n:a'], 1)
    """
    slots: list[Slots] = []
    if pool is not None:
        slots.append(Slots("pool", pool, None, pool_slots))
    key_from = None
    if concurrency is not None:
        name = f"{dag}.{node}"
        if concurrency_key is not None:
            source, field = key_source(concurrency_key)
            if field is None:
                name += ":" + key_text(params.get(source))
            else:
                key_from = (source, field)
                name += ":%s"  # filled in by claim.lua from the parent's output
        slots.append(Slots("node", name, concurrency, 1))
    rate = RateLimit.parse(rate_limit) if rate_limit else None
    return Gate(
        slots=tuple(slots),
        rate=rate,
        rate_name=rate.key_name(dag, node) if rate else "",
        priority=clamp_priority(priority + run_priority),
        key_from=key_from,
    )


def clamp_priority(priority: int) -> int:
    """``priority`` within +-PRIORITY_MAX.

    Examples:
        >>> clamp_priority(5000), clamp_priority(-3)
        (1000, -3)
    """
    return max(-PRIORITY_MAX, min(PRIORITY_MAX, int(priority)))
