"""Trigger rules as one pure function: the reference model the Lua join is tested against.

A join node's context holds how many of its ``total`` parents arrived ``succeeded``,
``failed`` or ``skipped``. After every arrival the rule answers ``fire`` (enqueue the node
now), ``skip`` (the rule can no longer be met) or ``wait``. ``dagrq/lua/complete.lua``
implements the same table; ``tests/test_rules.py`` checks the two agree on every input.

Examples:
    >>> decide("all_success", total=2, succeeded=2, failed=0, skipped=0)
    'fire'
    >>> decide("all_success", total=3, succeeded=1, failed=1, skipped=0)
    'skip'
    >>> decide("quorum:2", total=3, succeeded=1, failed=0, skipped=0)
    'wait'
"""

from __future__ import annotations

from typing import Literal

Decision = Literal["fire", "skip", "wait"]


def decide(rule: str, *, total: int, succeeded: int, failed: int, skipped: int) -> Decision:
    """Decide a join from its parents' outcomes so far.

    Parameters
    ----------
    rule:
        ``all_success``, ``all_done``, ``all_failed``, ``one_success``, ``one_failed``,
        ``none_failed`` or ``quorum:<k>``.
    total:
        the number of parents (data and order-only edges).
    succeeded, failed, skipped:
        how many parents arrived with each outcome; their sum is at most ``total``.

    Raises
    ------
    ValueError
        for an unknown rule.
    """
    arrived = succeeded + failed + skipped
    done = arrived >= total
    if rule == "all_success":
        return "fire" if succeeded == total else "skip" if failed or skipped else "wait"
    if rule == "all_done":
        return "fire" if done else "wait"
    if rule == "all_failed":
        return "fire" if failed == total else "skip" if succeeded or skipped else "wait"
    if rule == "one_success":
        return "fire" if succeeded else "skip" if done else "wait"
    if rule == "one_failed":
        return "fire" if failed else "skip" if done else "wait"
    if rule == "none_failed":
        return "skip" if failed else "fire" if done else "wait"
    if rule.startswith("quorum:"):
        k = int(rule.split(":", 1)[1])
        if succeeded >= k:
            return "fire"
        return "skip" if succeeded + (total - arrived) < k else "wait"
    raise ValueError(f"unknown trigger rule {rule!r}")
