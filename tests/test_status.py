"""Pure tables, no Redis: a run's stored hashes parsed into a status, ``explain`` from a status
alone, and the one policy for a failed or lost attempt."""

from __future__ import annotations

import pytest

from dagrq.errors import NoResult
from dagrq.jobs.attempt import settle_failure
from dagrq.model.plan import NodeSpec, Plan
from dagrq.model.status import RunStatus, explain, item_counts, parse_status

PLAN = Plan(
    "d",
    "json",
    60,
    {
        "a": NodeSpec(name="a", children=("j", "m")),
        "b": NodeSpec(name="b", children=("j",)),
        "j": NodeSpec(name="j", parents=("a", "b"), data_parents=("a", "b"), is_join=True),
        "m": NodeSpec(name="m", parents=("a",), data_parents=("a",), map_over="a", chunk=10),
        "q": NodeSpec(name="q", parents=("j", "m"), rule="one_success", is_join=True),
    },
)
META = {
    "dag": "d",
    "state": "running",
    "created_at": "100.5",
    "params": '{"day": "mon"}',
    "nodes": '["a", "b", "j", "m", "q"]',
}


def status(fields: dict[str, str], plan: Plan | None = PLAN, **meta: str) -> RunStatus:
    return parse_status("r1", {**META, **meta}, fields, plan)


def test_parse_a_running_run() -> None:
    s = status(
        {
            "a:state": "succeeded",
            "a:attempts": "1",
            "a:started": "101",
            "a:ended": "103.5",
            "a:queue": "dagrq.d",
            "b:state": "queued",
            "b:last_error": "boom",
            "b:attempts": "1",
            "m:state": "running",
            "m:items_total": "30",
            "m:items_started": "20",
            "m:items_done": "12",
            "m:items_failed": "1",
        }
    )
    assert (s.id, s.dag, s.state, s.created_at, s.params) == (
        "r1",
        "d",
        "running",
        100.5,
        {"day": "mon"},
    )
    assert list(s.nodes) == ["a", "b", "j", "m", "q"]  # every node, in the plan's order
    a, b, j, m = s.nodes["a"], s.nodes["b"], s.nodes["j"], s.nodes["m"]
    assert (a.attempts, a.duration_s, a.queue, a.error) == (1, 2.5, "dagrq.d", None)
    assert b.error == "boom"  # a retried attempt's error shows while it waits
    assert (j.state, j.rule, j.parents, j.waits_for) == (
        "pending",
        "all_success",
        ["a", "b"],
        ["b"],
    )
    assert m.items == {
        "total": 30,
        "queued": 10,
        "running": 8,
        "done": 12,
        "failed": 1,
        "canceled": 0,
        "executions": 20,
    }
    assert s.counts()["pending"] == 2 and not s.done


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        ({"a:state": "failed", "a:error": "E", "a:last_error": "L"}, "E"),
        ({"a:state": "succeeded", "a:last_error": "L"}, None),  # a success hides old errors
        ({"a:state": "queued", "a:last_error": "L"}, "L"),
    ],
)
def test_which_error_a_node_shows(fields: dict[str, str], error: str | None) -> None:
    assert status(fields).nodes["a"].error == error


def test_without_a_plan_the_states_still_parse() -> None:
    s = status({"a:state": "failed", "a:error": "E"}, plan=None, state="failed", ended_at="9")
    assert s.nodes["a"].rule is None and s.nodes["j"].waits_for == []
    assert s.failed() == {"a": "E"} and s.done and s.ended_at == 9.0
    with pytest.raises(NoResult, match=r"its plan .* is not in this Redis, so node 'a' cannot"):
        explain(s, "a")  # no plan: nothing to explain with, and it says so
    with pytest.raises(NoResult, match="no node 'zz'"):
        explain(s, "zz")


def test_item_counts_and_reexecutions() -> None:
    assert item_counts({"state": "running"}) is None
    assert item_counts({"items_total": "5", "items_started": "7", "items_done": "5"}) == {
        "total": 5,
        "queued": 0,
        "running": 0,
        "done": 5,
        "failed": 0,
        "canceled": 0,
        "executions": 7,  # two items ran twice
    }
    s = status(
        {
            "a:state": "succeeded",
            "a:attempts": "3",
            "m:state": "succeeded",
            "m:attempts": "1",
            "m:items_total": "5",
            "m:items_started": "7",
            "m:items_done": "5",
        }
    )
    assert s.reexecuted == 2 + 2


@pytest.mark.parametrize(
    ("states", "node", "decision", "waits_for", "arrived"),
    [
        ({"a": "succeeded", "b": "running"}, "j", "wait", ["b"], {"a": "succeeded"}),
        (
            {"a": "succeeded", "b": "succeeded"},
            "j",
            "fire",
            [],
            {"a": "succeeded", "b": "succeeded"},
        ),
        ({"a": "failed", "b": "running"}, "j", "upstream_failed", ["b"], {"a": "failed"}),
        ({"a": "canceled", "b": "succeeded"}, "j", "skip", [], {"a": "skipped", "b": "succeeded"}),
        ({"a": "running"}, "a", "fire", [], {}),  # a root: enqueued at submit
        ({"j": "skipped", "m": "succeeded"}, "q", "fire", [], {"j": "skipped", "m": "succeeded"}),
    ],
)
def test_explain(
    states: dict[str, str],
    node: str,
    decision: str,
    waits_for: list[str],
    arrived: dict[str, str],
) -> None:
    why = explain(status({f"{n}:state": st for n, st in states.items()}), node)
    assert (why.decision, why.waits_for, why.arrived) == (decision, waits_for, arrived)
    assert why.rule == PLAN.specs[node].rule


def test_explain_refuses_an_unknown_node() -> None:
    with pytest.raises(NoResult, match=r"no node 'zz'.*nodes: a, b, j, m, q"):
        explain(status({}), "zz")


@pytest.mark.parametrize(
    ("retries_left", "items", "node_retries", "settlement"),
    [
        (None, 1, 0, "fail"),  # a node without retry=
        (2, 1, 2, "retry"),  # RQ runs the same job again
        (0, 1, 2, "fail"),  # retries used up
        (1, 1, 1, "retry"),  # a single item's job
        (None, 100, 2, "retry_alone"),  # a chunk: each failed item on its own
        (None, 100, 0, "fail"),  # a chunk of a node without retry=
    ],
)
def test_one_settlement_policy(
    retries_left: int | None, items: int, node_retries: int, settlement: str
) -> None:
    assert (
        settle_failure(retries_left=retries_left, items=items, node_retries=node_retries)
        == settlement
    )


@pytest.mark.parametrize("width", [60, 80, 100, *range(108, 132, 3), 160])
def test_status_lays_out_for_the_terminal_width(width: int) -> None:
    """Names and states are never cut, details never squeezed to nothing, no line too wide."""
    from rich.console import Console

    from dagrq.cli.view import print_status

    error = "ValueError: the upstream file for 2026-11-28 has 3 rows where 4 were expected " * 2
    s = status(
        {
            "a:state": "failed",
            "a:error": error,
            "a:attempts": "3",
            "j:state": "upstream_failed",
        }
    )
    s.nodes["a_node_with_a_rather_long_name"] = s.nodes.pop("a")
    console = Console(width=width, record=True, force_terminal=True, color_system=None)
    print_status(console, s)
    text = console.export_text()
    assert "a_node_with_a_rather_long_name" in text and "upstream_failed" in text
    words = " ".join(text.replace("│", " ").split())  # a cell's wrapped lines, read on
    assert "the upstream file for 2026-11-28 has 3 rows" in words
    assert max(len(line) for line in text.splitlines()) <= width
    rows = [line for line in text.splitlines() if line.startswith("│")]
    assert all(line.rstrip().endswith("│") for line in rows)  # a table is never cropped
