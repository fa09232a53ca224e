"""The trigger rules as a table (dagrq/rules.py, the reference model of the Lua join): every
rule's fire / skip / wait for representative arrivals, and the rule text's parsing."""

from __future__ import annotations

import pytest

from dagrq.options import RULES, NodeOptions, quorum
from dagrq.rules import decide, parse_rule

# (rule, total parents, succeeded, failed, skipped) -> decision
TABLE = [
    ("all_success", 3, 3, 0, 0, "fire"),
    ("all_success", 3, 2, 0, 0, "wait"),
    ("all_success", 3, 1, 1, 0, "skip"),
    ("all_success", 3, 1, 0, 1, "skip"),
    ("all_done", 3, 1, 1, 0, "wait"),
    ("all_done", 3, 1, 1, 1, "fire"),
    ("all_done", 2, 0, 0, 2, "fire"),
    ("all_failed", 2, 0, 2, 0, "fire"),
    ("all_failed", 2, 0, 1, 0, "wait"),
    ("all_failed", 2, 1, 1, 0, "skip"),
    ("all_failed", 2, 0, 1, 1, "skip"),
    ("one_success", 3, 1, 0, 0, "fire"),
    ("one_success", 3, 0, 2, 0, "wait"),
    ("one_success", 3, 0, 2, 1, "skip"),
    ("one_failed", 3, 0, 1, 0, "fire"),
    ("one_failed", 3, 2, 0, 0, "wait"),
    ("one_failed", 3, 2, 0, 1, "skip"),
    ("none_failed", 3, 2, 0, 1, "fire"),
    ("none_failed", 3, 2, 0, 0, "wait"),
    ("none_failed", 3, 0, 1, 0, "skip"),
    ("quorum:2", 3, 2, 0, 0, "fire"),
    ("quorum:2", 3, 1, 1, 0, "wait"),
    ("quorum:2", 3, 1, 2, 0, "skip"),
    ("quorum:3", 3, 2, 0, 0, "wait"),
    ("quorum:3", 3, 2, 0, 1, "skip"),
]


@pytest.mark.parametrize(("rule", "total", "s", "f", "k", "expected"), TABLE)
def test_rule_table(rule: str, total: int, s: int, f: int, k: int, expected: str) -> None:
    assert decide(rule, total=total, succeeded=s, failed=f, skipped=k) == expected


def test_every_named_rule_is_in_the_table() -> None:
    assert {row[0] for row in TABLE if not row[0].startswith("quorum")} == set(RULES)


def test_rule_text_parses_once_for_every_user() -> None:
    assert parse_rule("quorum:12") == ("quorum", 12)
    assert parse_rule("none_failed") == ("none_failed", None)
    assert NodeOptions(trigger=quorum(4)).rule == "quorum:4"
    assert parse_rule(NodeOptions(trigger=quorum(4)).rule) == ("quorum", 4)
    for bad in ("quorum:0", "quorum:x", "majority:2"):
        with pytest.raises(ValueError, match="quorum:<k>"):
            parse_rule(bad)
    with pytest.raises(ValueError, match="unknown trigger rule"):
        decide("most", total=1, succeeded=1, failed=0, skipped=0)
