"""complete.lua against a real Redis: the join contract, written once, checked against the
Python reference model in dagrq/rules.py; idempotence; O(1) commands per arrival; the shared
Lua library in every script."""

from __future__ import annotations

import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagrq.model import queues
from dagrq.model.options import RULES
from dagrq.model.rules import decide
from dagrq.store import keys, runkeys, scripts

from .helpers import VERSION, arrival_cost, arrive, fake_join

OUTCOMES = ("succeeded", "failed", "skipped", "upstream_failed")
#: the node state each decision leaves
STATE_OF = {"fire": b"queued", "skip": b"skipped", "upstream_failed": b"upstream_failed"}


rules = st.sampled_from(list(RULES)) | st.integers(1, 6).map(lambda k: f"quorum:{k}")


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rule=rules, outcomes=st.lists(st.sampled_from(OUTCOMES), min_size=1, max_size=6))
def test_lua_rules_match_the_python_model(
    conn: redis.Redis, rule: str, outcomes: list[str]
) -> None:
    if rule.startswith("quorum:") and int(rule.split(":")[1]) > len(outcomes):
        rule = f"quorum:{len(outcomes)}"
    run_id, parents, child = fake_join(conn, len(outcomes), rule)
    counts = dict.fromkeys(OUTCOMES, 0)
    decided = None
    for parent, outcome in zip(parents, outcomes, strict=True):
        done = arrive(conn, run_id, parent, child, outcome)
        counts[outcome] += 1
        ended = dict(done.ended).get("j")
        got = (
            "fire"
            if done.fired
            else {"skipped": "skip", "upstream_failed": "upstream_failed"}.get(ended or "", "wait")
        )
        if decided:
            assert got == "wait", "a decided join must not be decided again"
            continue
        assert got == decide(rule, total=len(outcomes), **counts), (rule, outcomes, counts)
        if got != "wait":
            decided = got
    state = conn.hget(runkeys.nodes_key(run_id), "j:state")
    assert state == STATE_OF.get(decided or "", b"pending")
    if decided:  # a decided join leaves no context behind
        assert not conn.exists(runkeys.join_key(run_id, "j"))


def test_a_parent_delivered_twice_counts_once(conn: redis.Redis) -> None:
    run_id, parents, child = fake_join(conn, 3)
    for _ in range(3):
        assert arrive(conn, run_id, parents[0], child, "succeeded").fired == ()
    ctx = conn.hgetall(runkeys.join_key(run_id, "j"))
    assert ctx[b"#succeeded"] == b"1" and ctx[b"p0"] == b"succeeded"
    assert arrive(conn, run_id, parents[1], child, "succeeded").fired == ()
    assert arrive(conn, run_id, parents[1], child, "succeeded").fired == ()
    assert arrive(conn, run_id, parents[2], child, "succeeded").fired == ("j",)
    # late duplicates after the fire: nothing fires again, no context is recreated
    for p in parents:
        assert arrive(conn, run_id, p, child, "succeeded").fired == ()
    queue = keys.queue_key(queues.versioned_queue("q.test", VERSION))
    assert conn.lrange(queue, 0, -1) == [keys.job_id(run_id, "j").encode()]
    assert not conn.exists(runkeys.join_key(run_id, "j"))
    # a redelivered parent never changes its recorded outcome or the pending count
    assert conn.hget(runkeys.run_key(run_id), "pending") == b"1"


def test_the_last_arrival_fires_and_enqueues_in_the_same_step(conn: redis.Redis) -> None:
    run_id, parents, child = fake_join(conn, 2)
    arrive(conn, run_id, parents[0], child, "succeeded")
    assert conn.llen(keys.queue_key(queues.versioned_queue("q.test", VERSION))) == 0
    done = arrive(conn, run_id, parents[1], child, "succeeded")
    assert done.fired == ("j",)
    job = conn.hgetall(keys.job_key(run_id, "j"))
    assert job[b"status"] == b"queued" and b"enqueued_at" in job
    assert conn.hget(runkeys.nodes_key(run_id), "j:state") == b"queued"


@pytest.mark.parametrize("which", ["waiting", "last"])
def test_commands_per_arrival_do_not_grow_with_fan_in(quiet_conn: redis.Redis, which: str) -> None:
    cost = {width: arrival_cost(quiet_conn, width, which) for width in (3, 10, 300)}
    assert cost[3] == cost[10] == cost[300], cost


def test_every_script_carries_the_shared_library_and_rqs_time_format() -> None:
    from datetime import UTC, datetime

    from rq.utils import utcformat

    lib = scripts._source("_lib")
    assert all(source.startswith(lib) for source in scripts._SOURCES.values())
    moment = datetime(2026, 11, 28, 4, 5, 6, 789, tzinfo=UTC)
    assert moment.strftime(scripts.RQ_TIME_FORMAT) == utcformat(moment)
