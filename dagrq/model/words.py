"""Why a node is where it is, in one plain sentence for every state (the web view's node
panel; ``dagrq why`` gives the parts). Pure.

Examples:
    >>> from dagrq.model.status import Explanation, NodeStatus
    >>> why = Explanation(node="load", state="failed", rule="all_success", parents={},
    ...                   arrived={}, decision="fire", waits_for=[])
    >>> in_words(NodeStatus(state="failed", attempts=3, error="ValueError: bad row"), why)
    'failed after 3 attempts: ValueError: bad row'
    >>> up = why.model_copy(update={"state": "upstream_failed", "rule": "all_success",
    ...     "parents": {"a": "failed", "b": "succeeded"}, "arrived": {"a": "failed"}})
    >>> in_words(NodeStatus(state="upstream_failed"), up)
    'did not run: its parent a failed (rule all_success)'
"""

from __future__ import annotations

import time

from .status import Explanation, NodeStatus

#: what a parent's outcome did to a child that did not run
_BAD = ("failed", "upstream_failed")


def in_words(node: NodeStatus, why: Explanation) -> str:
    """One sentence saying why ``node`` is in its state, from its status and ``why``
    (``Run.explain``): what it waits for, where it runs, how it ended and because of what."""
    state = node.state
    if state == "pending":
        return _pending(why)
    if state == "queued":
        where = f"queue {node.queue}" if node.queue else "its queue"
        return f"queued on {where}, waiting for a worker" + (
            f": {why.waiting}" if why.waiting else ""
        )
    if state == "waiting":
        return f"waiting: {node.waiting or why.waiting or 'for its wait to be met'}"
    if state == "running":
        on = f" on {node.worker}" if node.worker else ""
        return f"running{on}, attempt {max(1, node.attempts)}"
    if state == "failed":
        tries = f" after {node.attempts} attempt{'s' if node.attempts != 1 else ''}"
        return f"failed{tries if node.attempts else ''}: {node.error or 'no error recorded'}"
    return _ended(node, why)


def _pending(why: Explanation) -> str:
    """A node whose parents have not all arrived, or whose rule is decided."""
    if why.problem:
        return f"stuck: {why.problem}"
    if why.decision == "skip":
        return "will be skipped: " + ("; ".join(why.causes) or f"rule {why.rule} cannot be met")
    if why.waits_for:
        names = ", ".join(why.waits_for)
        return f"waiting for {_plural(why.waits_for, 'parent')} {names} to end (rule {why.rule})"
    if not why.parents:
        return "not started yet: the run has not reached it"
    return f"its parents have ended and rule {why.rule} is met: it is about to be queued"


def _ended(node: NodeStatus, why: Explanation) -> str:
    """succeeded, cached, skipped, upstream_failed, canceled."""
    state = node.state
    if node.reason and node.reason.startswith("marked "):
        return node.reason
    if state == "succeeded":
        took = f" in {seconds(node.duration_s)}" if node.duration_s is not None else ""
        on = f" on {node.worker}" if node.worker else ""
        again = f" (attempt {node.attempts})" if node.attempts > 1 else ""
        return f"succeeded{took}{on}{again}"
    if state == "cached":
        return f"not run: its output was kept from run {node.cached_from or '?'} (cache)"
    if state == "upstream_failed":
        bad = [p for p, s in why.arrived.items() if s in _BAD]
        if not bad:
            return f"did not run: rule {why.rule} can no longer be met"
        names = ", ".join(bad)
        return f"did not run: its {_plural(bad, 'parent')} {names} failed (rule {why.rule})"
    if state == "skipped":
        if node.reason:
            return f"skipped: {node.reason}"
        causes = "; ".join(why.causes) or f"rule {why.rule} was not met"
        return f"skipped: {causes}"
    if state == "canceled":
        return "canceled: the run was canceled before this node ended"
    return state


def _plural(names: list[str], word: str) -> str:
    """``word`` for one name, ``words`` for more."""
    return word if len(names) == 1 else word + "s"


def seconds(value: float) -> str:
    """A duration as a person reads it.

    Examples:
        >>> seconds(0.0123), seconds(2.5), seconds(125), seconds(7380)
        ('12 ms', '2.5 s', '2 min 5 s', '2 h 3 min')
    """
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{int(value // 60)} min {int(value % 60)} s"
    return f"{int(value // 3600)} h {int(value % 3600 // 60)} min"


def ago(ts: float, now: float | None = None) -> str:
    """How long ago unix time ``ts`` was, as a person says it.

    Examples:
        >>> ago(100.0, 100.4), ago(100.0, 145.0), ago(0.0, 7200.0), ago(0.0, 3 * 86400.0)
        ('just now', '45 s ago', '2 h ago', '3 days ago')
    """
    gap = (time.time() if now is None else now) - ts
    if gap < 0:
        return "in " + ahead(ts, now).removeprefix("in ")
    if gap < 1:
        return "just now"
    return _span(gap) + " ago"


def ahead(ts: float, now: float | None = None) -> str:
    """How far ahead unix time ``ts`` is.

    Examples:
        >>> ahead(160.0, 100.0), ahead(100.0, 100.0)
        ('in 1 min', 'now')
    """
    gap = ts - (time.time() if now is None else now)
    return "now" if gap < 1 else "in " + _span(gap)


def _span(gap: float) -> str:
    """A length of time, rounded to its largest unit."""
    for unit, size in (("day", 86400), ("h", 3600), ("min", 60)):
        if gap >= size:
            n = int(gap // size)
            return f"{n} {unit}{'s' if unit == 'day' and n > 1 else ''}"
    return f"{int(gap)} s"
