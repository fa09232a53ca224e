"""Airflow's meaning in real runs: upstream_failed downstream of a failure, a branch and its
join, Skip, nodes that exit in every way (each ends failed, the run ends), and a job pushed for
a pending node, which is refused. run_local agrees with each real run."""

from __future__ import annotations

import time

import pytest
import redis

from dagrq import RunFailed, loader
from dagrq.model.local import simulate
from dagrq.store import keys, rqjobs, runkeys

from .helpers import Workers, failure_of, pipeline, wait_for

#: ``dagrq worker`` options of each way to run nodes
MODES = {"pooled": (), "isolated": ("--isolate",)}


def local(dag: object, **params: object) -> object:
    return simulate(dag.plan, dag.nodes, dag.codec, dag.validate_params(params))  # type: ignore[attr-defined]


def test_an_indirect_failure_gives_airflows_states(conn: redis.Redis, workers: Workers) -> None:
    dag = loader.load(pipeline("airflow_chain"))
    workers.start(pipeline("airflow_chain"), 2)
    run = dag.submit(conn)
    failure = failure_of(run)
    assert failure.failed == {"extract": "ConnectionError: the source is down"}
    states = {n: s.state for n, s in run.status().nodes.items()}
    assert states == {
        "extract": "failed",
        "transform": "upstream_failed",
        "load": "upstream_failed",
        "alert": "succeeded",  # one_failed counts an upstream failure
        "publish": "upstream_failed",  # none_failed does not run after a failure
        "rollback": "succeeded",  # all_failed counts it too
    }
    assert states == local(dag).states  # type: ignore[attr-defined]
    assert run.results()["alert"] == "paging: load gave None"
    events = {(e["node"], e["state"]) for e in run.events(follow=False)}
    assert ("publish", "upstream_failed") in events and ("transform", "upstream_failed") in events


@pytest.mark.parametrize(
    ("n", "taken", "skipped", "report"),
    [
        (500, "big", "small", "report: big path for 500"),
        (7, "small", "big", "report: small path for 7"),
    ],
)
def test_a_branch_and_its_join(
    conn: redis.Redis,
    workers: Workers,
    redis_url: str,
    n: int,
    taken: str,
    skipped: str,
    report: str,
) -> None:
    dag = loader.load(pipeline("branching"))
    workers.start(pipeline("branching"), 1)
    run = dag.submit(conn, n=n)
    final = run.wait(timeout=60)
    states = {name: s.state for name, s in final.nodes.items()}
    assert (states[taken], states[skipped], states["report"]) == (
        "succeeded",
        "skipped",
        "succeeded",
    )
    assert final.nodes["route"].chosen == [taken]
    assert run.result("route") == taken
    assert run.result("report") == report
    assert states == local(dag, n=n).states  # type: ignore[attr-defined]
    why = run.explain(skipped)
    assert why.state == "skipped" and why.arrived == {"measure": "succeeded", "route": "skipped"}
    assert f"branch route did not choose it (it chose {taken})" in why.causes


def test_skip_with_a_reason_and_the_join_after_it(conn: redis.Redis, workers: Workers) -> None:
    dag = loader.load(pipeline("branching"))
    workers.start(pipeline("branching"), 1)
    run = dag.submit(conn, n=0)  # small path, which skips itself
    final = run.wait(timeout=60)
    assert final.nodes["small"].state == "skipped"
    assert final.nodes["small"].reason == "nothing to process"
    assert final.nodes["report"].state == "skipped"  # every parent skipped: no success
    assert run.explain("small").causes == ["it raised Skip: nothing to process"]
    assert "small was skipped: nothing to process" in run.explain("report").causes
    assert {n: s.state for n, s in final.nodes.items()} == local(dag, n=0).states  # type: ignore[attr-defined]
    skip_events = [e for e in run.events(follow=False) if e["node"] == "small"]
    assert (
        skip_events[-1]["state"] == "skipped" and skip_events[-1]["reason"] == "nothing to process"
    )


@pytest.mark.parametrize("mode", MODES)
def test_nodes_that_exit_fail_fast_and_the_run_ends(
    conn: redis.Redis, workers: Workers, mode: str
) -> None:
    dag = loader.load(pipeline("exits"))
    procs = workers.start(pipeline("exits"), 1, *MODES[mode], "--lease", "5")
    started = time.monotonic()
    run = dag.submit(conn)
    failure = failure_of(run)
    assert time.monotonic() - started < 10
    assert failure.failed == {
        "calls_sys_exit": "SystemExit: 3",
        "raises_keyboard_interrupt": "KeyboardInterrupt",
        "raises_generator_exit": "GeneratorExit",
    }
    assert run.status().nodes["after"].state == "upstream_failed"
    assert procs[0].poll() is None  # the worker goes on


@pytest.mark.parametrize("mode", MODES)
def test_a_node_that_vanishes_fails_at_once_and_the_run_ends(
    conn: redis.Redis, workers: Workers, mode: str
) -> None:
    # pooled: the supervisor sees its process die; isolated: the worker sees its horse die
    dag = loader.load(pipeline("exits", "vanish"))
    workers.start(pipeline("exits", "vanish"), 1, *MODES[mode], "--lease", "60")
    started = time.monotonic()
    run = dag.submit(conn)
    with pytest.raises(RunFailed, match="worker lost") as info:
        run.wait(timeout=60)
    took = time.monotonic() - started
    print(f"{mode}: os._exit settled in {took:.1f} s")
    assert took < 30  # far under the 60 s lease: not the lease path
    assert "exit status 7" in info.value.failed["calls_os_exit"]
    assert run.status().nodes["after_vanish"].state == "upstream_failed"


def test_a_job_pushed_by_hand_for_a_pending_node_is_refused(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline("diamond"))
    run = dag.submit(conn, x=4)
    join_queue = dag.specs["d"].queue_name
    rq_queue = keys.queue_key(dag.plan.rq_queue(join_queue))
    conn.rpush(rq_queue, keys.job_id(run.id, "d"))  # d's parents have not run
    workers.start(pipeline("diamond"), 1, "--queue", join_queue)
    job = rqjobs.fetch_job(keys.job_id(run.id, "d"), conn)
    wait_for(lambda: job.latest_result(), 30, "the pushed job answered")
    status = run.status()
    assert status.nodes["d"].state == "pending" and status.nodes["d"].attempts == 0
    assert not conn.exists(runkeys.output_key(run.id, "d"))
    result = rqjobs.fetch_job(keys.job_id(run.id, "d"), conn).latest_result()
    assert result is not None and result.return_value["refused"] == "pending"
    workers.start(pipeline("diamond"), 1)
    final = run.wait(timeout=60)
    assert run.result("d") == {"b": 8, "c": 12, "sum": 20} and final.nodes["d"].attempts == 1


def test_a_branch_skips_what_it_does_not_follow_as_airflows_skip_all_except(
    conn: redis.Redis, workers: Workers
) -> None:
    """An unchosen child is skipped whatever its rule (here all_done); a join of the branch
    and the chosen child (Airflow's "empty branch") runs, as in Airflow."""
    address = pipeline("branching", "airflow")
    dag = loader.load(address)
    workers.start(address, 1)
    run = dag.submit(conn)
    final = run.wait(timeout=60)
    states = {name: s.state for name, s in final.nodes.items()}
    assert states == {
        "pick": "succeeded",
        "chosen": "succeeded",
        "other": "skipped",
        "tolerant": "skipped",
        "empty_branch_join": "succeeded",
    }
    assert states == local(dag).states  # type: ignore[attr-defined]
    why = run.explain("tolerant")
    assert why.decision == "skip" and "branch pick did not choose it" in why.causes[0]
