"""What the counters kept in Redis mean: the histogram buckets and the parse of the counters
hash into per-DAG, per-node counts (docs/observability.md). Pure: no Redis, no Prometheus.

The Lua steps count into one hash (``dagrq:metrics``), one field per count, ``<dag>|<what>``:

=========================  ===========================================================
``run|<state>``            runs of the DAG that ended ``succeeded``/``failed``/``canceled``
``s|<node>``               attempts of the node started (``start.lua``)
``n|<node>|<state>``       the node ended in ``<state>`` (``_lib.lua``'s ``finish``)
``r|<node>``               failed attempts retried (``requeue.lua``)
``d|<node>|<i>``, ``|us``  attempt durations: bucket ``i`` of :data:`BUCKETS` (1-based,
                           ``len + 1`` is +Inf), not cumulative; and their sum in whole µs
``w|<node>|<i>``, ``|us``  queue waits of first attempts, the same way
=========================  ===========================================================

and ``*|redrives``, ``*|lease_expiries`` for the reconciler's counts of no one DAG.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

#: the duration and queue-wait histograms' upper bounds, seconds: from 5 ms (a trivial node
#: on an idle worker) to an hour (a long batch step), about x2.5 apart, as Prometheus's default
#: buckets are, stretched to the hour that DAG nodes reach (_lib.lua's BUCKETS spells them too)
BUCKETS: tuple[float, ...] = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
    900.0,
    3600.0,
)


@dataclass
class Histogram:
    """One histogram of one node: its buckets' counts (not cumulative; the last is +Inf)
    and the sum of what was observed."""

    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))
    total: float = 0.0

    def cumulative(self) -> list[tuple[str, int]]:
        """``(upper bound, count at or below it)`` pairs as Prometheus writes them, ``+Inf``
        last."""
        out, running = [], 0
        for le, n in zip((*(str(b) for b in BUCKETS), "+Inf"), self.counts, strict=True):
            running += n
            out.append((le, running))
        return out

    @property
    def count(self) -> int:
        """How many were observed."""
        return sum(self.counts)


@dataclass
class Counts:
    """The counters hash, parsed."""

    #: (dag, state) -> runs ended so
    runs: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (dag, node) -> attempts started
    started: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (dag, node, state) -> the node ended so
    ended: dict[tuple[str, str, str], int] = field(default_factory=dict)
    #: (dag, node) -> failed attempts retried
    retried: dict[tuple[str, str], int] = field(default_factory=dict)
    #: (dag, node) -> attempt durations
    durations: dict[tuple[str, str], Histogram] = field(
        default_factory=lambda: defaultdict(Histogram)
    )
    #: (dag, node) -> first attempts' queue waits
    waits: dict[tuple[str, str], Histogram] = field(default_factory=lambda: defaultdict(Histogram))
    #: counts of no one DAG: redrives, lease_expiries
    overall: dict[str, int] = field(default_factory=dict)


def parse_counts(raw: dict[str, str]) -> Counts:
    """The counters hash's fields (see the module's docstring) as :class:`Counts`; a field
    this version does not know is left out (a newer dagrq may count more).

    Examples:
        >>> c = parse_counts({"etl|n|load|failed": "2", "etl|d|load|3": "1",
        ...                   "etl|d|load|us": "2500", "*|redrives": "4"})
        >>> c.ended, c.durations["etl", "load"].counts[2], c.durations["etl", "load"].total
        ({('etl', 'load', 'failed'): 2}, 1, 0.0025)
    """
    counts = Counts()
    for name, value in raw.items():
        dag, _, what = name.partition("|")
        parts = what.split("|")
        if dag == "*":
            counts.overall[what] = int(value)
        elif parts[0] == "run" and len(parts) == 2:
            counts.runs[dag, parts[1]] = int(value)
        elif parts[0] == "s" and len(parts) == 2:
            counts.started[dag, parts[1]] = int(value)
        elif parts[0] == "r" and len(parts) == 2:
            counts.retried[dag, parts[1]] = int(value)
        elif parts[0] == "n" and len(parts) == 3:
            counts.ended[dag, parts[1], parts[2]] = int(value)
        elif parts[0] in ("d", "w") and len(parts) == 3:
            _bucket(counts.durations if parts[0] == "d" else counts.waits, dag, parts, value)
    return counts


def _bucket(into: dict[tuple[str, str], Histogram], dag: str, parts: list[str], value: str) -> None:
    """One histogram field (``<node>|<i>`` or ``<node>|us``) into its histogram."""
    histogram = into[dag, parts[1]]
    if parts[2] == "us":
        histogram.total = int(value) / 1e6
    elif parts[2].isdigit() and 1 <= int(parts[2]) <= len(BUCKETS) + 1:
        histogram.counts[int(parts[2]) - 1] = int(value)
