"""Waits with real workers on a real Redis: approvals and signals, timeouts, durable sleeps,
sensors that free their worker between pokes, event-triggered runs, sub-DAGs (docs/waits.md).
The approval across worker and Redis restarts is tests/reliability/test_wait_faults.py."""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest
import redis

import dagrq
from dagrq import DAG, NodeDefinitionError, Run, RunFailed, SignalRefused, loader
from dagrq.model.plan import NodeSpec
from dagrq.model.waits import Waiting
from dagrq.store import keys

from .helpers import Workers, pipeline, wait_for
from .helpers import dagrq as cli

ADDRESS = "waiting"


def _load(attr: str) -> DAG:
    return loader.load(pipeline(ADDRESS, attr))


def _serve(workers: Workers, *attrs: str, n: int = 1) -> None:
    first, *more = (pipeline(ADDRESS, a) for a in attrs)
    workers.start(first, n, *more)


def _node_state(run: Run, node: str) -> str:
    return run.status().nodes[node].state


# ------------------------------------------------------------------ declaring
def f() -> int:
    return 1


def test_waits_are_checked_when_declared() -> None:
    dag = DAG("t_waits_decl")
    with pytest.raises(NodeDefinitionError, match="under 1 s"):
        dag.sensor(every=0.2)(f)
    with pytest.raises(NodeDefinitionError, match="on_timeout value 'x' is not a int"):
        dag.wait("w", type=int, timeout=5, on_timeout="x")
    bad = DAG("t_waits_decl2")
    bad.node(not_before="deliver_at")(f)
    with pytest.raises(NodeDefinitionError, match="not_before='deliver_at' names no run param"):
        bad.validate()
    child = DAG("t_waits_child")
    child.node(f)
    child.node(name="g")(f)
    parent = DAG("t_waits_parent")
    parent.subdag("sub", child)
    with pytest.raises(NodeDefinitionError, match=r"has 2 sinks .* name the one"):
        parent.validate()


def test_a_dag_without_waits_keeps_its_version() -> None:
    """Unset wait fields stay out of the stored plan (so existing runs keep their version)."""
    assert set(NodeSpec(name="x").to_dict()).isdisjoint({"wait", "start_after", "not_before"})
    spec = _load("approval").specs["approve"]
    waiting = Waiting.parse(spec.wait or "")
    assert (waiting.kind, waiting.type_name) == ("signal", "Approval")
    assert json.loads(waiting.form or "{}")["required"] == ["approved", "by"]


# ------------------------------------------------------------------ signals
def test_a_signal_is_checked_by_the_type_and_one_value_wins(
    conn: redis.Redis, redis_url: str, workers: Workers
) -> None:
    _serve(workers, "approval", n=2)
    run = _load("approval").submit(conn)
    wait_for(lambda: _node_state(run, "approve") == "waiting", 30, "approve waiting")
    assert "waiting for signal approve (type Approval) since" in (
        run.explain("approve").waiting or ""
    )
    listed = cli("runs", "--state", "waiting", "--json", "--url", redis_url)
    mine = [r for r in json.loads(listed.stdout) if r["id"] == run.id]
    assert mine and mine[0]["waiting"].startswith("approve: signal approve (type Approval)")
    bad = cli("signal", run.id, "approve", "--value", '{"approved": "perhaps"}', "--url", redis_url)
    assert bad.returncode == 2, bad.stderr
    assert "approved: Input should be a valid boolean" in bad.stderr
    assert "by: Field required" in bad.stderr and "Traceback" not in bad.stderr
    assert _node_state(run, "approve") == "waiting"  # a bad value changes nothing
    answers: list[Any] = []

    def send(who: str) -> None:
        try:
            answers.append(Run.fetch(run.id, conn).signal("approve", {"approved": True, "by": who}))
        except SignalRefused as exc:
            answers.append(exc)

    racers = [threading.Thread(target=send, args=(w,)) for w in ("ann", "bob")]
    for t in racers:
        t.start()
    for t in racers:
        t.join()
    assert sorted(map(type, answers), key=str) == sorted([str, SignalRefused], key=str), answers
    winner = next(a for a in answers if isinstance(a, str))
    assert winner == "accepted"
    status = run.wait(timeout=30)
    assert status.state == "succeeded"
    paid = run.result("payout")
    assert paid in ("42 paid, approved by ann", "42 paid, approved by bob")
    with pytest.raises(SignalRefused, match="already ended"):
        run.signal("approve", {"approved": False, "by": "late"})


def test_a_signal_to_a_node_not_yet_waiting_is_kept(conn: redis.Redis, workers: Workers) -> None:
    _serve(workers, "approval")
    run = _load("approval").submit(conn, hold=3.0)  # report runs 3 s: approve is pending
    wait_for(lambda: _node_state(run, "report") == "running", 30, "report running")
    assert run.signal("approve", {"approved": True, "by": "early"}) == "kept"
    assert run.wait(timeout=30).state == "succeeded"
    assert run.result("payout") == "42 paid, approved by early"
    with pytest.raises(SignalRefused, match="has no wait node 'payout'"):
        run.signal("payout", 1)


def test_a_timeout_ends_a_wait_by_its_rule(conn: redis.Redis, workers: Workers) -> None:
    _serve(workers, "expiring")
    run = _load("expiring").submit(conn)
    with pytest.raises(RunFailed):
        run.wait(timeout=30)
    status = run.status()
    assert status.nodes["ok"].state == "failed"
    assert "WaitTimedOut: wait 'ok' timed out after 2 s" in (status.nodes["ok"].error or "")
    assert status.nodes["maybe"].state == "succeeded"
    assert run.result("after") == "ok=None maybe=7"


# ------------------------------------------------------------------ timers and sensors
def test_a_sleep_is_a_timer_not_a_held_worker(conn: redis.Redis, workers: Workers) -> None:
    _serve(workers, "napping", "quick")
    run = _load("napping").submit(conn)
    wait_for(lambda: _node_state(run, "nap") == "waiting", 30, "nap waiting")
    assert (run.explain("nap").waiting or "").startswith("waiting for timer: starts at")
    assert conn.zcard(keys.TIMERS_KEY) >= 1
    other = _load("quick").submit(conn)  # the one process is free meanwhile
    assert other.wait(timeout=30).state == "succeeded"
    assert _node_state(run, "nap") == "waiting"
    assert run.wait(timeout=30).state == "succeeded"
    assert run.result("woke") >= 2.0


def test_a_sensor_pokes_until_true_and_frees_its_worker_in_between(
    conn: redis.Redis, workers: Workers
) -> None:
    _serve(workers, "sensing", "quick")  # one process serves both
    run = _load("sensing").submit(conn)
    wait_for(lambda: conn.llen(f"test:waits:poked:{run.id}") >= 1, 30, "first poke")
    conn.delete("test:waits:blinks")
    other = _load("quick").submit(conn)
    assert other.wait(timeout=30).state == "succeeded"
    status = run.wait(timeout=60)
    assert status.state == "succeeded" and run.result("landed") == "file.csv"
    pokes = [x.decode().split("|") for x in conn.lrange(f"test:waits:poked:{run.id}", 0, -1)]
    blink_pid, blink_at = conn.lrange("test:waits:blinks", 0, -1)[0].decode().split("|")
    assert len(pokes) == 4  # true on its 4th poke
    assert {pid for pid, _ in pokes} == {blink_pid}  # one process did all of it
    assert float(pokes[0][1]) < float(blink_at) < float(pokes[3][1])  # the other ran between
    logs = "".join(e.line for e in run.logs("landed"))
    assert all(f"poke {n}: looking" in logs for n in (1, 2, 3, 4))


# ------------------------------------------------------------------ events
def test_an_event_with_a_key_sent_three_times_starts_one_run_of_each_dag(
    conn: redis.Redis, redis_url: str, workers: Workers
) -> None:
    _serve(workers, "orders", "audit", "reports")
    wait_for(
        lambda: len(conn.xinfo_groups(keys.EVENTS_KEY)) >= 3 if conn.exists(keys.EVENTS_KEY) else 0,
        30,
        "the three DAGs subscribed",
    )
    day = f"2026-12-{time.time_ns() % 28 + 1:02d}-{time.time_ns()}"
    said = [
        cli("emit", "orders.uploaded", "--data", json.dumps({"day": day}), "--key", day,
            "--url", redis_url)
        for _ in range(3)
    ]  # fmt: skip
    assert all(r.returncode == 0 for r in said), said
    assert "already emitted" in said[2].stdout

    def ours(dag: str) -> list[Any]:
        return [r for r in Run.list(conn, dag=dag) if r.params.get("day") == day]

    wait_for(lambda: len(ours("t_wait_orders")) and len(ours("t_wait_audit")), 30, "runs")
    time.sleep(1.5)  # time enough for a duplicate to show
    assert len(ours("t_wait_orders")) == 1 and len(ours("t_wait_audit")) == 1
    loaded = ours("t_wait_orders")[0].id

    def chained() -> list[Any]:
        return [r for r in Run.list(conn, dag="t_wait_reports") if r.params.get("run") == loaded]

    wait_for(chained, 30, "the run its success emitted")  # emits="orders.loaded"
    assert dagrq.emit(conn, "orders.uploaded", {"day": day}, key=day) == dagrq.emit(
        conn, "orders.uploaded", {"day": day}, key=day
    )


# ------------------------------------------------------------------ sub-DAGs
def test_a_mapped_subdag_runs_one_child_per_item_and_joins_them(
    conn: redis.Redis, workers: Workers
) -> None:
    _serve(workers, "fleet", "region", n=2)
    run = _load("fleet").submit(conn, n=20)
    assert run.wait(timeout=90).state == "succeeded"
    assert run.result("total") == sum(2 * len(f"r{i:02d}") for i in range(20))
    children = [r for r in Run.list(conn, dag="t_wait_region") if run.id in (r.trigger or "")]
    assert len(children) == 20 and {r.state for r in children} == {"succeeded"}
    spans = sorted((r.created_at, r.ended_at or 0.0) for r in children)
    at_once = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert at_once <= 5  # max_children
    assert all(c.id in run.explain("per_region").children for c in children)


def test_a_failed_child_fails_its_node(conn: redis.Redis, workers: Workers) -> None:
    _serve(workers, "fleet", "region")
    run = _load("fleet").submit(conn, n=2, bad=True)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    status = run.status()
    node = status.nodes["per_region"]
    assert node.state == "failed" and "ChildRunFailed: child run" in (node.error or "")
    assert "(item 2) failed; see dagrq why" in (node.error or "")
    assert status.nodes["total"].state == "upstream_failed"


def test_canceling_the_parent_cancels_its_children(conn: redis.Redis, workers: Workers) -> None:
    _serve(workers, "fleet", "region", n=2)
    run = _load("fleet").submit(conn, n=4, hold=20.0)
    wait_for(lambda: len(run.explain("per_region").children) >= 2, 30, "children started")
    run.cancel()
    children = run.explain("per_region").children
    states = {Run.fetch(c, conn).status().state for c in children}
    assert states == {"canceled"}, states


def test_the_lua_constants_are_the_python_ones() -> None:
    """_lib.lua spells the timers and events keys and limits itself; they must agree."""
    from importlib import resources

    from dagrq.model.waits import PARK_MIN_S

    lib = resources.files("dagrq.store").joinpath("lua", "_lib.lua").read_text()
    assert f"local TIMERS = '{keys.TIMERS_KEY}'" in lib
    assert f"local EVENTS = '{keys.EVENTS_KEY}'" in lib
    assert f"local EVENT_STREAM_MAX = {keys.EVENTS_MAX}" in lib
    assert f"local EVENT_KEY_TTL = {keys.EVENT_KEY_TTL_S}" in lib
    assert f"local PARK_MIN_MS = {int(PARK_MIN_S * 1000)}" in lib
    assert "'" + keys.event_key_key("N", "K").removesuffix("N:K") in lib
