"""complete.lua against a real Redis: the join contract, written once, checked against the
Python reference model in dagrq/rules.py; idempotence; O(1) commands per arrival."""

from __future__ import annotations

import uuid

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagrq import join, keys
from dagrq.options import RULES
from dagrq.plan import NodeSpec
from dagrq.rules import decide

OUTCOMES = ("succeeded", "failed", "skipped")


def spec(
    name: str,
    parents: tuple[str, ...] = (),
    children: tuple[str, ...] = (),
    rule: str = "all_success",
) -> NodeSpec:
    return NodeSpec(
        name=name,
        parents=parents,
        data_parents=parents,
        children=children,
        params=(),
        queue_name="q.test",
        is_join=len(parents) > 1,
        rule=rule,
        timeout=None,
        retry=None,
        result_ttl=600,
    )


def fake_run(
    conn: redis.Redis, width: int, rule: str = "all_success"
) -> tuple[str, list[NodeSpec], NodeSpec]:
    """A run with parents p0..p<width-1> running and one join node `j` waiting for them."""
    run_id = uuid.uuid4().hex
    parents = tuple(f"p{i}" for i in range(width))
    child = spec("j", parents=parents, rule=rule)
    conn.hset(keys.run_key(run_id), mapping={"state": "running", "pending": width + 1, "failed": 0})
    fields = {f"{p}:state": "running" for p in parents}
    fields["j:state"] = "pending"
    conn.hset(keys.nodes_key(run_id), mapping=fields)
    return run_id, [spec(p, children=("j",)) for p in parents], child


def arrive(
    conn: redis.Redis,
    run_id: str,
    parent: NodeSpec,
    child: NodeSpec,
    outcome: str,
    attempt: int = 0,
) -> join.Completed:
    return join.complete(
        conn, run_id, parent, [child], outcome, ttl_s=600, output=b"1", attempt=attempt
    )


rules = st.sampled_from(list(RULES)) | st.integers(1, 6).map(lambda k: f"quorum:{k}")


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rule=rules, outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=6))
def test_lua_rules_match_the_python_model(
    conn: redis.Redis, rule: str, outcomes: list[str]
) -> None:
    if rule.startswith("quorum:") and int(rule.split(":")[1]) > len(outcomes):
        rule = f"quorum:{len(outcomes)}"
    run_id, parents, child = fake_run(conn, len(outcomes), rule)
    counts = dict.fromkeys(OUTCOMES, 0)
    decided = None
    for parent, outcome in zip(parents, outcomes, strict=True):
        done = arrive(conn, run_id, parent, child, outcome)
        counts[outcome] += 1
        expected = (decided and "none") or decide(rule, total=len(outcomes), **counts)
        got = (
            "fire" if done.fired else "skip" if done.skipped else "wait" if not decided else "none"
        )
        if decided:
            assert got == "none", "a decided join must not fire or skip again"
            continue
        assert got == expected, (rule, outcomes, counts)
        if got in ("fire", "skip"):
            decided = got
    state = conn.hget(keys.nodes_key(run_id), "j:state")
    assert state == {"fire": b"queued", "skip": b"skipped", None: b"pending"}[decided]
    if decided:  # a decided join leaves no context behind
        assert not conn.exists(keys.join_key(run_id, "j"))


def test_a_parent_delivered_twice_counts_once(conn: redis.Redis) -> None:
    run_id, parents, child = fake_run(conn, 3)
    for _ in range(3):
        assert arrive(conn, run_id, parents[0], child, "succeeded").fired == ()
    ctx = conn.hgetall(keys.join_key(run_id, "j"))
    assert ctx[b"#succeeded"] == b"1" and ctx[b"p0"] == b"succeeded"
    assert arrive(conn, run_id, parents[1], child, "succeeded").fired == ()
    assert arrive(conn, run_id, parents[1], child, "succeeded").fired == ()
    assert arrive(conn, run_id, parents[2], child, "succeeded").fired == ("j",)
    # late duplicates after the fire: nothing fires again, no context is recreated
    for p in parents:
        assert arrive(conn, run_id, p, child, "succeeded").fired == ()
    assert conn.lrange(keys.queue_key("q.test"), 0, -1) == [keys.job_id(run_id, "j").encode()]
    assert not conn.exists(keys.join_key(run_id, "j"))
    # a redelivered parent never changes its recorded outcome or the pending count
    assert conn.hget(keys.run_key(run_id), "pending") == b"1"


def test_the_last_arrival_fires_and_enqueues_in_the_same_step(conn: redis.Redis) -> None:
    run_id, parents, child = fake_run(conn, 2)
    arrive(conn, run_id, parents[0], child, "succeeded")
    assert conn.llen(keys.queue_key("q.test")) == 0
    done = arrive(conn, run_id, parents[1], child, "succeeded")
    assert done.fired == ("j",)
    job = conn.hgetall(keys.job_key(run_id, "j"))
    assert job[b"status"] == b"queued" and b"enqueued_at" in job
    assert conn.hget(keys.nodes_key(run_id), "j:state") == b"queued"


def _commands(conn: redis.Redis) -> int:
    stats = conn.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))


def arrival_cost(conn: redis.Redis, width: int, which: str) -> int:
    """Redis commands (INFO commandstats, scripts' inner calls included) of one arrival."""
    run_id, parents, child = fake_run(conn, width)
    arrive(conn, run_id, parents[0], child, "succeeded")  # also loads the script
    if which == "last":
        for p in parents[1:-1]:
            arrive(conn, run_id, p, child, "succeeded")
    parent = parents[-1] if which == "last" else parents[1]
    conn.hset(keys.nodes_key(run_id), f"{parent.name}:attempts", 1)  # as start.lua leaves it
    before = _commands(conn)
    done = arrive(conn, run_id, parent, child, "succeeded", attempt=1)  # as a worker reports
    assert done.fired == (("j",) if which == "last" else ())
    return _commands(conn) - before


@pytest.mark.parametrize("which", ["waiting", "last"])
def test_commands_per_arrival_do_not_grow_with_fan_in(conn: redis.Redis, which: str) -> None:
    cost = {width: arrival_cost(conn, width, which) for width in (3, 10, 300)}
    assert cost[3] == cost[10] == cost[300], cost
