"""Run state edited or deleted by hand: a join context deleted, a node state edited, the node
states deleted, the plan deleted. `dagrq reconcile` repairs what can be repaired, ends the
rest as damaged with the damage named; `why` and `status` say so; other runs go on."""

from __future__ import annotations

import subprocess
import sys

import redis

from dagrq import loader
from dagrq.store import runkeys
from dagrq.store.runs import RunStore

from ..helpers import pipeline, wait_for
from .servers import Fleet, RedisServer


def dagrq(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagrq", *args, "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
    )


def _finish(conn: redis.Redis, dag: object, run_id: str, node: str, output: bytes) -> None:
    """Do what a worker does for ``node``: start it, then report it succeeded."""
    store = RunStore(conn, run_id, dag.plan)  # type: ignore[attr-defined]
    started = store.start(dag.specs[node])  # type: ignore[attr-defined]
    assert store.deliver(node, "succeeded", output=output, attempt=started.attempt)


def test_a_deleted_join_context_is_repaired_by_reconcile(server: RedisServer) -> None:
    dag = loader.load(pipeline("diamond"))
    conn = server.client()
    run = dag.submit(conn, x=2)
    for node, out in (("a", b"2"), ("b", b"4")):
        _finish(conn, dag, run.id, node, out)
    conn.delete(runkeys.join_key(run.id, "d"))  # b's arrival at d is lost
    _finish(conn, dag, run.id, "c", b"6")
    assert run.status().nodes["d"].state == "pending"  # 1 of 2 arrivals: it would hang
    why = dagrq(server.url, "why", run.id, "d")
    assert "never moved on" in why.stdout and f"dagrq reconcile {run.id}" in why.stdout
    assert "the rule is met" not in why.stdout
    repaired = dagrq(server.url, "reconcile", run.id)
    assert repaired.returncode == 0, repaired.stderr
    assert "delivered them again" in repaired.stdout
    assert run.status().nodes["d"].state == "queued"
    burst = subprocess.run(
        [sys.executable, "-m", "dagrq", "worker", pipeline("diamond"), "--url", server.url,
         "--burst"],
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    assert burst.returncode == 0
    assert run.wait(timeout=30).state == "succeeded"
    assert run.result("d") == {"b": 4, "c": 6, "sum": 10}


def test_damage_beyond_repair_ends_that_run_only(server: RedisServer, fleet: Fleet) -> None:
    dag = loader.load(pipeline("diamond"))
    conn = server.client()
    edited, emptied, healthy = (dag.submit(conn, x=i) for i in range(3))
    conn.hset(runkeys.nodes_key(edited.id), "b:state", "exploded")
    conn.delete(runkeys.nodes_key(emptied.id))
    repaired = dagrq(server.url, "reconcile")
    assert repaired.returncode == 0, repaired.stderr
    assert "node b has state 'exploded', which no step sets" in repaired.stdout
    assert "its node states are gone" in repaired.stdout
    for run, damage in ((edited, "exploded"), (emptied, "node states are gone")):
        final = run.status()
        assert final.state == "failed" and damage in (final.damaged or "")
        status = dagrq(server.url, "status", run.id)
        assert status.returncode == 1 and "run state damaged" in status.stdout
        why = dagrq(server.url, "why", run.id, "a")
        assert "damaged" in why.stdout and "the rule is met" not in why.stdout
    fleet.start(pipeline("diamond"), 1)
    assert healthy.wait(timeout=60).state == "succeeded"  # the other run went on


def test_a_deleted_plan_is_stored_again_by_a_worker_that_serves_it(
    server: RedisServer, fleet: Fleet
) -> None:
    dag = loader.load(pipeline("diamond"))
    conn = server.client()
    run = dag.submit(conn, x=3, pause_ms=1500)
    plan_key = runkeys.plan_key(dag.name, dag.plan_hash)
    conn.delete(plan_key)
    fleet.start(pipeline("diamond"), 1, "--lease", "6")
    wait_for(lambda: conn.exists(plan_key), 30, "the plan stored again")
    assert run.wait(timeout=60).state == "succeeded"
    fleet.procs.stop()  # no worker of this version is left to put the plan back
    lost = dag.submit(conn, x=4)
    conn.delete(plan_key)
    from dagrq.store import runs as store

    store._PLANS.clear()
    repaired = dagrq(server.url, "reconcile", lost.id)
    assert f"its plan {dag.plan_hash} of DAG 't_diamond' is gone" in repaired.stdout
    assert lost.status().state == "failed"


def test_a_node_set_to_succeeded_by_hand_is_named_damage_not_success(
    server: RedisServer,
) -> None:
    dag = loader.load(pipeline("diamond"))
    conn = server.client()
    run = dag.submit(conn, x=2)
    for node, out in (("a", b"2"), ("b", b"4"), ("c", b"6")):
        _finish(conn, dag, run.id, node, out)
    conn.hset(runkeys.nodes_key(run.id), "d:state", "succeeded")  # never ran: forged
    repaired = dagrq(server.url, "reconcile", run.id)
    assert "d is succeeded but never ran (no attempt recorded)" in repaired.stdout
    status = run.status()
    assert status.state == "failed" and "never ran" in (status.damaged or "")
    why = dagrq(server.url, "why", run.id, "d")
    assert "damaged" in why.stdout and "the rule is met" not in why.stdout


def test_a_deleted_plan_and_a_planted_output_are_said_in_one_line(
    server: RedisServer,
) -> None:
    dag = loader.load(pipeline("diamond"))
    conn = server.client()
    run = dag.submit(conn, x=2)
    _finish(conn, dag, run.id, "a", b"2")
    conn.set(runkeys.output_key(run.id, "a"), b"\x80not json")  # planted
    result = dagrq(server.url, "result", run.id, "a")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "the stored output of node 'a'" in line and "cannot be read" in line
    conn.delete(runkeys.plan_key(dag.name, dag.plan_hash))
    from dagrq.store import runs as store

    store._PLANS.clear()
    why = dagrq(server.url, "why", run.id, "d")
    assert why.returncode == 1 and "Traceback" not in why.stderr  # damaged: docs/cli.md
    assert f"its plan (version {dag.plan_hash} of DAG 't_diamond') is not in this Redis" in (
        why.stderr
    )
