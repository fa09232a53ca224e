"""Flow control: node concurrency, pools, fair keys, rate limits, max_active_runs and
priorities, enforced by claim.lua on a real Redis with real worker processes; each body records
its start and end in Redis and the checks are on those timestamps."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import redis

from dagrq import DAG, NodeDefinitionError, ParameterError, loader
from dagrq.model.flow import RateLimit
from dagrq.model.plan import Plan
from dagrq.store import keys

from .helpers import Workers, dagrq, most_at_once, pipeline, wait_for

ADDRESS = "flow"


def spans(conn: redis.Redis, kind: str) -> list[tuple[str, float, float]]:
    """``(run, start, end)`` of every body of ``kind`` that ended, by start (an attempt is its
    run, node and process)."""
    starts = [x.decode().split("|") for x in conn.lrange(f"test:flow:{kind}:start", 0, -1)]
    ends = {
        (r, p): float(t)
        for r, p, t in (x.decode().split("|") for x in conn.lrange(f"test:flow:{kind}:end", 0, -1))
    }
    return sorted(
        ((r, float(t), ends[(r, p)]) for r, p, t in starts if (r, p) in ends), key=lambda s: s[1]
    )


# ------------------------------------------------------------------ declaring
def test_limits_are_checked_when_declared() -> None:
    dag = DAG("t_flow_decl")
    with pytest.raises(Exception, match="rate_limit '100 per minute' is not N/s"):
        dag.node(rate_limit="100 per minute")(lambda: 1)
    with pytest.raises(Exception, match="concurrency"):
        dag.node(concurrency=0)(lambda: 1)
    with pytest.raises(Exception, match="pool name"):
        dag.node(pool="a b")(lambda: 1)
    assert RateLimit.parse("api:100/m") == RateLimit("api", 100, 60)


def fetch(tenant: str) -> dict[str, str]:
    return {"tenant": tenant}


def load(fetch: dict[str, str]) -> int:
    return 1


def _tenant_dag(key: str, serializer: str = "json") -> DAG:
    dag = DAG("t_flow_keys", serializer=serializer)  # type: ignore[arg-type]
    dag.node(fetch)
    dag.node(concurrency=2, concurrency_key=key)(load)
    return dag


def test_a_concurrency_key_names_a_parameter_or_a_parent_field() -> None:
    _tenant_dag("tenant").validate()
    _tenant_dag("fetch.tenant").validate()
    with pytest.raises(NodeDefinitionError, match="names no run parameter"):
        _tenant_dag("customer").validate()
    with pytest.raises(NodeDefinitionError, match="not a parent"):
        _tenant_dag("other.tenant").validate()
    with pytest.raises(NodeDefinitionError, match="needs serializer='json'"):
        _tenant_dag("fetch.tenant", "pickle").validate()


def test_a_dag_without_limits_keeps_its_version_and_limits_survive_the_plan() -> None:
    dag = loader.load(pipeline(ADDRESS, "limited"))
    text = dag.plan.to_json()
    assert '"concurrency": 3' in text and '"priority"' not in text
    assert Plan.from_json(text) == dag.plan
    few = loader.load(pipeline(ADDRESS, "few"))
    assert Plan.from_json(few.plan.to_json()).max_active_runs == 2
    plain = loader.load(pipeline("diamond"))
    assert "concurrency" not in plain.plan.to_json()


def test_the_lua_prefix_is_the_python_one() -> None:
    lib = Path(__file__).parent.parent.joinpath("dagrq/store/lua/_lib.lua").read_text()
    assert f"local FLOW = '{keys.FLOW_PREFIX}'" in lib
    assert re.search(r"local DEFAULT_POOL_SIZE = 128\b", lib)


def test_priority_is_checked_at_submit(conn: redis.Redis) -> None:
    dag = loader.load(pipeline(ADDRESS, "ordered"))
    with pytest.raises(ParameterError, match="priority must be a whole number"):
        dag.submit(conn, priority=5000)
    assert not conn.keys("dagrq:run:*")


# ------------------------------------------------------------------ enforcing
def test_concurrency_3_never_runs_more_than_3_bodies_over_200_runs(
    conn: redis.Redis, workers: Workers
) -> None:
    workers.start(pipeline(ADDRESS, "limited"), 3, "-c", "3")  # 9 processes
    dag = loader.load(pipeline(ADDRESS, "limited"))
    runs = [dag.submit(conn) for _ in range(200)]
    for run in runs:
        assert run.wait(timeout=120).state == "succeeded"
    done = spans(conn, "limited")
    assert len(done) == 200
    assert most_at_once([(s, e) for _, s, e in done]) == 3
    limit = keys.node_limit_key("t_flow_limited.body")
    assert conn.hget(limit, "used") == b"0" and not conn.exists(limit + ":wait")  # all given back


def test_a_tenant_with_few_runs_is_not_starved_by_one_with_many(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline(ADDRESS, "fair"))
    a = [dag.submit(conn, tenant="a") for _ in range(300)]
    b = [dag.submit(conn, tenant="b") for _ in range(3)]
    workers.start(pipeline(ADDRESS, "fair"), 2, "-c", "2")
    for run in b:
        assert run.wait(timeout=120).state == "succeeded"
    b_end = max(run.status().ended_at or 0 for run in b)
    a_ended = sum(1 for run in a if (run.status().ended_at or 1e18) < b_end)
    print(f"tenant b's 3 runs ended after {a_ended} of tenant a's")
    assert a_ended < 50
    for run in a:
        assert run.wait(timeout=120).state == "succeeded"
    tenants = {
        t: most_at_once([(s, e) for r, s, e in spans(conn, "fair") if r in ids])
        for t, ids in (("a", {r.id for r in a}), ("b", {r.id for r in b}))
    }
    assert tenants["a"] <= 2 and tenants["b"] <= 2
    assert not conn.keys(keys.node_limit_key("t_flow_fair.work:*"))  # a key's limit goes unused


def test_a_global_rate_limit_holds_over_every_window(conn: redis.Redis, workers: Workers) -> None:
    dag = loader.load(pipeline(ADDRESS, "rated"))
    runs = [dag.submit(conn) for _ in range(620)]
    workers.start(pipeline(ADDRESS, "rated"), 2, "-c", "2")  # 4 processes
    for run in runs:
        assert run.wait(timeout=120).state == "succeeded"
    # each attempt's start as its node recorded it (start.lua, Redis's clock): the body's own
    # clock adds a busy worker's dispatch delay, which the limit does not govern
    starts = sorted(run.status().nodes["call"].started_at or 0.0 for run in runs)
    assert len(spans(conn, "rated")) == 620  # every body ran, once
    worst = max(sum(1 for t in starts[i : i + 40] if t < s + 1.0) for i, s in enumerate(starts))
    took = starts[-1] - starts[0]
    print(f"620 starts in {took:.1f} s; at most {worst} in any 1 s window")
    assert worst <= 20
    assert took >= 30  # 20 a second


def test_max_active_runs_2_of_10_runs(conn: redis.Redis, workers: Workers, redis_url: str) -> None:
    dag = loader.load(pipeline(ADDRESS, "few"))
    runs = [dag.submit(conn) for _ in range(10)]
    assert [r.status().state for r in runs[:3]] == ["running", "running", "queued"]
    why = dagrq("why", runs[5].id, "step", env={"DAGRQ_URL": redis_url})
    assert "max_active_runs" in why.stdout, why.stdout + why.stderr
    workers.start(pipeline(ADDRESS, "few"), 1, "-c", "4")
    for run in runs:
        assert run.wait(timeout=60).state == "succeeded"
    lives = []
    for run in runs:
        events = run.events(follow=False)
        began = next(float(e["ts"]) for e in events if e["node"] == "" and e["state"] == "running")
        lives.append((began, run.status().ended_at or 0))
    assert most_at_once(lives) <= 2
    assert [b for b, _ in lives] == sorted(b for b, _ in lives)  # started in submit order
    assert conn.scard(keys.active_set_key("t_flow_few")) == 0


def test_a_priority_10_node_submitted_last_starts_next(conn: redis.Redis, workers: Workers) -> None:
    dag = loader.load(pipeline(ADDRESS, "ordered"))
    blocker = dag.submit(conn, hold=1.0)
    workers.start(pipeline(ADDRESS, "ordered"), 1, "-c", "1")
    wait_for(lambda: conn.llen("test:flow:ordered:start"), 30, "the blocker started")
    waiting = [dag.submit(conn) for _ in range(50)]
    urgent = dag.submit(conn, priority=10)
    for run in [blocker, *waiting, urgent]:
        assert run.wait(timeout=60).state == "succeeded"
    order = [r for r, _, _ in spans(conn, "ordered")]
    assert order[:2] == [blocker.id, urgent.id]
    assert order[2:] == [r.id for r in waiting]  # FIFO among equals


def test_a_pool_is_shared_resized_live_and_listed(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    import dagrq as api

    assert api.pools.set(conn, "t_flow_wh", 0) == (0, 0)  # closed: everything waits
    dag = loader.load(pipeline(ADDRESS, "pooled"))
    runs = [dag.submit(conn) for _ in range(6)]
    workers.start(pipeline(ADDRESS, "pooled"), 1, "-c", "4")
    wait_for(lambda: runs[0].status().nodes["load"].state == "waiting", 30, "load waiting")
    status = runs[0].status().nodes["load"]
    assert status.waiting == "pool t_flow_wh: 0 of 0 slots taken"
    shown = dagrq("pools", "--json", env={"DAGRQ_URL": redis_url})
    listed = {p["name"]: p for p in json.loads(shown.stdout)}
    assert len(listed["t_flow_wh"]["waiting"]) >= 1
    out = dagrq("pools", "set", "t_flow_wh", "2", env={"DAGRQ_URL": redis_url})
    assert out.returncode == 0, out.stderr
    for run in runs:
        assert run.wait(timeout=60).state == "succeeded"
    assert most_at_once([(s, e) for _, s, e in spans(conn, "pooled")]) <= 2
    assert conn.hget(keys.pool_key("t_flow_wh"), "used") == b"0"
    bad = dagrq("pools", "set", "t_flow_wh", "-1", env={"DAGRQ_URL": redis_url})
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_canceling_runs_gives_back_their_slots_and_lines(
    conn: redis.Redis, workers: Workers
) -> None:
    import dagrq as api

    api.pools.set(conn, "t_flow_wh", 1)
    dag = loader.load(pipeline(ADDRESS, "pooled"))
    runs = [dag.submit(conn) for _ in range(5)]
    workers.start(pipeline(ADDRESS, "pooled"), 1, "-c", "3")
    wait_for(lambda: conn.zcard(keys.pool_key("t_flow_wh") + ":wait"), 30, "someone waiting")
    for run in runs:
        run.cancel()
    wait_for(lambda: conn.hget(keys.pool_key("t_flow_wh"), "used") == b"0", 30, "slots back")
    assert conn.zcard(keys.pool_key("t_flow_wh") + ":wait") == 0
