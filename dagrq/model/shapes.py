"""The JSON shapes of ``--json`` (and of anything else that speaks JSON about runs). Pure.

Stable, documented in docs/cli.md: keys are only ever added. Timestamps are ISO 8601 in UTC
(``2026-11-28T08:00:00.123456Z``), durations are seconds.

Examples:
    >>> iso(0.0)
    '1970-01-01T00:00:00Z'
    >>> iso(None) is None
    True
"""

from __future__ import annotations

import statistics
from datetime import UTC, datetime
from typing import Any

from .status import Explanation, NodeStatus, RunStatus, RunSummary

#: the fields of a status and a node that are points in time
_TIMES = ("created_at", "ended_at", "queued_at", "started_at")


def iso(ts: float | None) -> str | None:
    """A Unix time as ISO 8601 UTC with a ``Z``; None stays None."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _timed(fields: dict[str, Any]) -> dict[str, Any]:
    for key in _TIMES:
        if key in fields:
            fields[key] = iso(fields[key])
    return fields


def node_json(node: NodeStatus) -> dict[str, Any]:
    """One node: state, queue, attempts, times, duration_s, error, traceback, reason, chosen,
    rule, parents, waits_for, items, attempt_errors (each failed attempt's error and
    traceback), waiting (a ``waiting`` node's reason), parks (times a wait parked),
    children (a sub-DAG node's child runs)."""
    out = _timed(node.model_dump())
    out["duration_s"] = node.duration_s
    return out


def status_json(status: RunStatus) -> dict[str, Any]:
    """A run with every node: id, dag, name, tags, trigger, priority, state, version,
    created_at, ended_at, duration_s, params, counts, damaged, unserved, reexecuted, parent (a
    child run's: ``<run id> <node>``), nodes."""
    out = _timed(status.model_dump(exclude={"nodes"}))
    end = status.ended_at
    out["duration_s"] = None if end is None else max(0.0, end - status.created_at)
    out["counts"] = {k: v for k, v in status.counts().items() if v}
    out["reexecuted"] = status.reexecuted
    out["nodes"] = {name: node_json(node) for name, node in status.nodes.items()}
    return out


def summary_json(summary: RunSummary) -> dict[str, Any]:
    """One line of ``dagrq runs``: id, dag, name, tags, state, created_at, ended_at,
    duration_s, done, total, params, trigger, waiting (with ``--state waiting``)."""
    out = _timed(summary.model_dump())
    out["duration_s"] = summary.duration_s
    return out


def explanation_json(why: Explanation) -> dict[str, Any]:
    """``dagrq why``: node, state, rule, parents, arrived, decision, waits_for, error, causes,
    problem, waiting, command, children."""
    return why.model_dump()


def recent_json(runs: list[RunSummary]) -> dict[str, Any]:
    """What a DAG's recent ``runs`` say (the DAGs page): ``runs`` (how many), ``ended``,
    ``succeeded``, ``success_rate`` (of those that ended, None when none has), ``median_s``
    (median duration of those that ended) and ``active`` (queued or running).

    Examples:
        >>> mk = lambda s, d: RunSummary(id="x", dag="d", state=s, created_at=0.0,
        ...                              ended_at=d)
        >>> recent_json([mk("succeeded", 2.0), mk("failed", 4.0), mk("succeeded", 9.0),
        ...              mk("running", None)])
        {'runs': 4, 'ended': 3, 'succeeded': 2, 'success_rate': 0.667, 'median_s': 4.0, 'active': 1}
    """
    ended = [r for r in runs if r.duration_s is not None]
    times = sorted(r.duration_s for r in ended if r.duration_s is not None)
    ok = sum(1 for r in ended if r.state == "succeeded")
    return {
        "runs": len(runs),
        "ended": len(ended),
        "succeeded": ok,
        "success_rate": round(ok / len(ended), 3) if ended else None,
        "median_s": statistics.median(times) if times else None,
        "active": sum(1 for r in runs if r.state in ("queued", "running")),
    }
