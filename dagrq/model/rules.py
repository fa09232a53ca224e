"""Trigger rules as pure functions: the reference model the Lua join is tested against.

A join node's context holds how many of its ``total`` parents arrived ``succeeded``,
``failed``, ``skipped`` or ``upstream_failed``. After every arrival the rule answers ``fire``
(enqueue the node now), ``skip`` (it ends ``skipped``: the rule can no longer be met, by skips),
``upstream_failed`` (it ends ``upstream_failed``: it cannot run because an upstream failed) or
``wait``. The rules carry Airflow's names and Airflow's meaning (its ``TriggerRuleDep``);
``dagrq/lua/_lib.lua`` implements the same table; ``tests/test_join.py`` checks the two agree
on every input, ``tests/test_rules.py`` holds the table and Airflow's own test cases.

Examples:
    >>> decide("all_success", total=2, succeeded=2)
    'fire'
    >>> decide("all_success", total=3, succeeded=1, failed=1)
    'upstream_failed'
    >>> decide("all_success", total=3, succeeded=1, skipped=1)
    'skip'
    >>> decide("quorum:2", total=3, succeeded=1)
    'wait'
"""

from __future__ import annotations

from typing import Literal

Decision = Literal["fire", "skip", "upstream_failed", "wait"]

#: the prefix of a quorum rule's text: ``quorum:<k>``
QUORUM = "quorum"

#: the final node state each ending decision gives
ENDS = {"skip": "skipped", "upstream_failed": "upstream_failed"}


def parse_rule(rule: str) -> tuple[str, int | None]:
    """Split a rule's text into its name and its argument (only a quorum has one).

    Raises:
        ValueError: for a quorum whose ``k`` is not a whole number >= 1.

    Examples:
        >>> parse_rule("quorum:3")
        ('quorum', 3)
        >>> parse_rule("all_done")
        ('all_done', None)
    """
    name, sep, arg = rule.partition(":")
    if not sep:
        return rule, None
    if name != QUORUM or not arg.isdigit() or int(arg) < 1:
        raise ValueError(f"trigger rule {rule!r} is not quorum:<k> with k >= 1")
    return name, int(arg)


def decide(
    rule: str,
    *,
    total: int,
    succeeded: int = 0,
    failed: int = 0,
    skipped: int = 0,
    upstream_failed: int = 0,
) -> Decision:
    # long: one branch per rule, line for line as _lib.lua's decide (a table to compare)
    """Decide a node from its parents' outcomes so far.

    Args:
        rule: a rule's name (``all_success``, ``none_failed_min_one_success``, ...) or
            ``quorum:<k>``.
        total: the number of parents (data and order-only edges).
        succeeded: how many parents arrived ``succeeded``.
        failed: how many arrived ``failed``.
        skipped: how many arrived ``skipped``.
        upstream_failed: how many arrived ``upstream_failed``; the four sum to at most
            ``total``.

    Raises:
        ValueError: for an unknown rule.
    """
    s, f, k, u = succeeded, failed, skipped, upstream_failed
    done = s + f + k + u >= total
    name, q = parse_rule(rule)
    if name == "all_success":
        return "upstream_failed" if f or u else "skip" if k else "fire" if done else "wait"
    if name == "all_done":
        return "fire" if done else "wait"
    if name == "all_failed":
        return "skip" if s or k else "fire" if done else "wait"
    if name == "one_success":
        if s:
            return "fire"
        return ("skip" if k == total else "upstream_failed") if done else "wait"
    if name == "one_failed":
        return "fire" if f or u else "skip" if done else "wait"
    if name == "one_done":
        return "fire" if s or f else "skip" if done else "wait"
    if name == "none_failed":
        return "upstream_failed" if f or u else "fire" if done else "wait"
    if name == "none_failed_min_one_success":
        if f or u:
            return "upstream_failed"
        return "skip" if k == total else "fire" if done else "wait"
    if name == "none_skipped":
        return "skip" if k else "fire" if done else "wait"
    if name == "all_skipped":
        return "skip" if s or f or u else "fire" if done else "wait"
    if name == "all_done_min_one_success":
        if k:
            return "skip"
        return ("fire" if s else "upstream_failed") if done else "wait"
    if name == "always":
        return "fire"
    if q is not None:
        if s >= q:
            return "fire"
        if s + (total - s - f - k - u) < q:  # too few parents left to reach q
            return "upstream_failed" if f or u else "skip"
        return "wait"
    raise ValueError(f"unknown trigger rule {rule!r}")
