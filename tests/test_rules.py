"""The trigger rules as a table (dagrq/rules.py, the reference model of the Lua join): every
rule's fire / skip / upstream_failed / wait for representative arrivals, and the rule text's
parsing. Airflow's own test cases are in test_airflow_rules.py."""

from __future__ import annotations

import pytest

from dagrq.model.options import RULES, NodeOptions, quorum
from dagrq.model.rules import decide, parse_rule

F, K, U, W = "fire", "skip", "upstream_failed", "wait"
# (rule, total parents, succeeded, failed, skipped, upstream_failed) -> decision
TABLE = [
    ("all_success", 3, 3, 0, 0, 0, F),
    ("all_success", 3, 2, 0, 0, 0, W),
    ("all_success", 3, 1, 1, 0, 0, U),  # a failure: it cannot run because of it
    ("all_success", 3, 1, 0, 0, 1, U),  # an upstream failure, one step removed
    ("all_success", 3, 1, 0, 1, 0, K),  # a skip: skipped
    ("all_success", 3, 0, 1, 1, 0, U),  # failure wins over skip
    ("all_done", 3, 1, 1, 0, 0, W),
    ("all_done", 3, 1, 1, 0, 1, F),
    ("all_done", 2, 0, 0, 2, 0, F),
    ("all_failed", 2, 0, 2, 0, 0, F),
    ("all_failed", 2, 0, 1, 0, 1, F),  # upstream_failed counts as failed
    ("all_failed", 2, 0, 1, 0, 0, W),
    ("all_failed", 2, 1, 1, 0, 0, K),
    ("all_failed", 2, 0, 1, 1, 0, K),
    ("one_success", 3, 1, 0, 0, 0, F),
    ("one_success", 3, 0, 2, 0, 0, W),
    ("one_success", 3, 0, 2, 1, 0, U),  # all ended, none succeeded, a failure among them
    ("one_success", 2, 0, 0, 2, 0, K),  # all skipped
    ("one_failed", 3, 0, 1, 0, 0, F),
    ("one_failed", 3, 0, 0, 0, 1, F),
    ("one_failed", 3, 2, 0, 0, 0, W),
    ("one_failed", 3, 2, 0, 1, 0, K),
    ("one_done", 3, 1, 0, 0, 0, F),
    ("one_done", 3, 0, 1, 0, 0, F),
    ("one_done", 2, 0, 0, 1, 0, W),
    ("one_done", 2, 0, 0, 1, 1, K),  # skips and upstream failures are not "done" here
    ("none_failed", 3, 2, 0, 1, 0, F),
    ("none_failed", 3, 2, 0, 0, 0, W),
    ("none_failed", 3, 0, 1, 0, 0, U),
    ("none_failed", 3, 1, 0, 0, 1, U),
    ("none_failed", 2, 0, 0, 2, 0, F),  # all skipped still fires (Airflow's meaning)
    ("none_failed_min_one_success", 2, 1, 0, 1, 0, F),
    ("none_failed_min_one_success", 2, 0, 0, 2, 0, K),
    ("none_failed_min_one_success", 3, 1, 0, 1, 0, W),
    ("none_failed_min_one_success", 3, 1, 1, 0, 0, U),
    ("none_skipped", 3, 2, 1, 0, 0, F),
    ("none_skipped", 3, 2, 0, 0, 0, W),
    ("none_skipped", 3, 1, 0, 1, 0, K),
    ("all_skipped", 3, 0, 0, 3, 0, F),
    ("all_skipped", 3, 0, 0, 2, 0, W),
    ("all_skipped", 3, 1, 0, 0, 0, K),
    ("all_skipped", 3, 0, 0, 0, 1, K),
    ("all_done_min_one_success", 3, 1, 2, 0, 0, F),
    ("all_done_min_one_success", 3, 1, 1, 0, 0, W),
    ("all_done_min_one_success", 3, 0, 2, 0, 1, U),
    ("all_done_min_one_success", 3, 2, 0, 1, 0, K),
    ("always", 3, 0, 0, 0, 0, F),  # before any parent: it does not wait
    ("always", 3, 0, 3, 0, 0, F),
    ("quorum:2", 3, 2, 0, 0, 0, F),
    ("quorum:2", 3, 1, 1, 0, 0, W),
    ("quorum:2", 3, 1, 2, 0, 0, U),
    ("quorum:2", 3, 1, 0, 2, 0, K),
    ("quorum:3", 3, 2, 0, 0, 0, W),
    ("quorum:3", 3, 2, 0, 1, 0, K),
]


@pytest.mark.parametrize(("rule", "total", "s", "f", "k", "u", "expected"), TABLE)
def test_rule_table(rule: str, total: int, s: int, f: int, k: int, u: int, expected: str) -> None:
    assert (
        decide(rule, total=total, succeeded=s, failed=f, skipped=k, upstream_failed=u) == expected
    )


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
        decide("most", total=1, succeeded=1)
