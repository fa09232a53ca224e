"""Trigger rules as pure functions: the reference model the Lua join is tested against.

A join node's context holds how many of its ``total`` parents arrived ``succeeded``,
``failed`` or ``skipped``. After every arrival the rule answers ``fire`` (enqueue the node
now), ``skip`` (the rule can no longer be met) or ``wait``. ``dagrq/lua/_lib.lua`` implements
the same table; ``tests/test_join.py`` checks the two agree on every input and
``tests/test_rules.py`` holds the table itself.

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

#: the prefix of a quorum rule's text: ``quorum:<k>``
QUORUM = "quorum"


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


def decide(rule: str, *, total: int, succeeded: int, failed: int, skipped: int) -> Decision:
    """Decide a join from its parents' outcomes so far.

    Args:
        rule: ``all_success``, ``all_done``, ``all_failed``, ``one_success``,
            ``one_failed``, ``none_failed`` or ``quorum:<k>``.
        total: the number of parents (data and order-only edges).
        succeeded: how many parents arrived ``succeeded``.
        failed: how many arrived ``failed``.
        skipped: how many arrived ``skipped``; the three sum to at most ``total``.

    Raises:
        ValueError: for an unknown rule.
    """
    arrived = succeeded + failed + skipped
    done = arrived >= total
    name, k = parse_rule(rule)
    if name == "all_success":
        return "fire" if succeeded == total else "skip" if failed or skipped else "wait"
    if name == "all_done":
        return "fire" if done else "wait"
    if name == "all_failed":
        return "fire" if failed == total else "skip" if succeeded or skipped else "wait"
    if name == "one_success":
        return "fire" if succeeded else "skip" if done else "wait"
    if name == "one_failed":
        return "fire" if failed else "skip" if done else "wait"
    if name == "none_failed":
        return "skip" if failed else "fire" if done else "wait"
    if k is not None:
        if succeeded >= k:
            return "fire"
        return "skip" if succeeded + (total - arrived) < k else "wait"
    raise ValueError(f"unknown trigger rule {rule!r}")
