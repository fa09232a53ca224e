"""A worker killed mid-node (SIGKILL) loses nothing: the node is retried or failed by its rule,
joins fire once, and the run ends. Real worker processes, really killed."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import pytest
import redis

from dagrq import RunFailed, loader
from dagrq.jobs.lost import abandoned, on_failure
from dagrq.jobs.reconcile import MAX_REDRIVES, Reconciler
from dagrq.store import keys, rqjobs, runkeys, scripts
from dagrq.workers.leased import make_worker

from .helpers import VERSION, Workers, fake_run, pipeline, spec, wait_for


def _kill_when_running(conn: redis.Redis, name: str, run_id: str) -> int:
    """SIGKILL the process running the first attempt of ``name``; return its pid."""
    pid = int(wait_for(lambda: conn.get(f"test:pid:{name}:{run_id}"), 60, f"{name} started"))
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.parametrize("isolate", [False, True], ids=["pooled", "isolated"])
def test_killed_node_is_retried_and_its_join_fires_once(
    conn: redis.Redis, workers: Workers, isolate: bool
) -> None:
    # pooled: the pool's process dies (its supervisor settles the node at once);
    # isolated: the work horse dies (its worker settles the node at once)
    extra = ("--isolate",) if isolate else ()
    workers.start(pipeline("lease", "retried"), 2, *extra, "--lease", "5")
    dag = loader.load(pipeline("lease", "retried"))
    run = dag.submit(conn)
    _kill_when_running(conn, "slow", run.id)
    final = run.wait(timeout=90)
    assert final.state == "succeeded", final.failed()
    assert run.result("join") == {"slow_attempt": 2, "other": 2}
    assert conn.get(f"test:join:{run.id}") == b"1"  # the join ran exactly once
    assert final.nodes["slow"].attempts == 2
    requeued = [e for e in run.events(follow=False) if e["node"] == "slow" and e.get("error")]
    assert [e["state"] for e in requeued] == ["queued"]
    assert "worker lost" in requeued[0]["error"]


def test_killed_node_without_retries_fails_and_the_run_ends(
    conn: redis.Redis, workers: Workers
) -> None:
    workers.start(pipeline("lease", "doomed"), 2, "--lease", "5")
    dag = loader.load(pipeline("lease", "doomed"))
    run = dag.submit(conn)
    _kill_when_running(conn, "lost", run.id)
    with pytest.raises(RunFailed, match="worker lost") as info:
        run.wait(timeout=90)
    assert set(info.value.failed) == {"lost"}
    final = run.status()
    assert final.state == "failed"
    assert final.nodes["lost"].state == "failed"
    assert "worker lost" in (final.nodes["lost"].error or "")
    assert final.nodes["after"].state == "upstream_failed"
    assert conn.get(f"test:after:{run.id}") is None


def test_a_stale_attempt_report_is_refused(conn: redis.Redis) -> None:
    # attempt 1's worker was presumed lost and attempt 2 has started: attempt 1's late
    # success must not be recorded, nor arrive at the child
    node, child = spec("n", children=("c",)), spec("c", ("n",))
    run_id = fake_run(conn, {"n": "queued", "c": "pending"})
    first = scripts.start(conn, run_id, node, 60, VERSION)
    second = scripts.start(conn, run_id, node, 60, VERSION)
    assert (first.attempt, second.attempt) == (1, 2)
    late = scripts.complete(
        conn,
        run_id,
        node,
        [child],
        scripts.Report("succeeded", b"1", attempt=first.attempt),
        ttl_s=60,
        version=VERSION,
    )
    assert late.run_state == "stale"
    assert conn.hget(runkeys.nodes_key(run_id), "n:state") == b"running"
    assert conn.exists(runkeys.output_key(run_id, "n")) == 0
    assert not scripts.requeue(conn, run_id, "n", "boom", attempt=first.attempt)
    done = scripts.complete(
        conn,
        run_id,
        node,
        [child],
        scripts.Report("succeeded", b"2", attempt=second.attempt),
        ttl_s=60,
        version=VERSION,
    )
    assert done.fired == ("c",)
    assert conn.get(runkeys.output_key(run_id, "n")) == b"2"


def test_a_dagrq_job_ignores_callbacks_it_did_not_set(conn: redis.Redis) -> None:
    from rq import Callback
    from rq.job import Job

    job = Job.create(
        keys.ENTRYPOINT,
        kwargs={"dag": "d", "run": "r", "node": "n"},
        connection=conn,
        serializer=rqjobs.SERIALIZER,
        on_failure=Callback("os.system"),
        on_success=Callback("os.system"),
    )
    job.save()
    fetched = rqjobs.fetch_job(job.id, conn)
    assert fetched.failure_callback is None
    assert fetched.success_callback is None
    ours = Job.create(
        keys.ENTRYPOINT,
        connection=conn,
        serializer=rqjobs.SERIALIZER,
        on_failure=Callback(keys.ON_FAILURE),
    )
    ours.save()
    again = rqjobs.fetch_job(ours.id, conn)
    assert again.failure_callback is on_failure


def test_a_lost_chunk_is_retried_item_by_item(conn: redis.Redis, workers: Workers) -> None:
    workers.start(pipeline("lease", "mapped"), 2, "--lease", "5")
    dag = loader.load(pipeline("lease", "mapped"))
    run = dag.submit(conn)
    _kill_when_running(conn, "seven", run.id)
    final = run.wait(timeout=90)
    assert final.state == "succeeded"
    assert run.result("total") == sum(i * i for i in range(10))
    assert conn.get(f"test:total:{run.id}") == b"1"
    items = final.nodes["square"].items or {}
    assert (items["total"], items["done"], items["failed"]) == (10, 10, 0)
    assert int(conn.get(f"test:seven:{run.id}") or 0) == 2  # the lost attempt, then alone


def _taken_and_lost(conn: redis.Redis, job_id: str, queue_name: str) -> None:
    """What a worker leaves when Redis goes away between RQ's start of a job (status started,
    a lease registered) and dagrq's start of the node's attempt: the node is still queued."""
    assert scripts.claim(conn, [keys.queue_key(queue_name)]) is not None
    conn.lrem(keys.intermediate_key(queue_name), 0, job_id)
    conn.hset(keys.RQ_JOB_PREFIX + job_id, "status", "started")
    conn.zadd(rqjobs.started_key(queue_name), {f"{job_id}:lost": time.time() - 60})


def test_a_node_lost_before_its_attempt_began_is_put_back_spending_no_retry(
    conn: redis.Redis,
) -> None:
    dag = loader.load(pipeline("lease", "doomed"))  # no retry=
    run = dag.submit(conn)
    job_id, queue_name = keys.job_id(run.id, "start"), dag.plan.rq_queues[0]
    reconciler = Reconciler(conn, grace_s=0, lease_margin_s=0)
    for lost in range(1, MAX_REDRIVES + 1):
        _taken_and_lost(conn, job_id, queue_name)
        assert not abandoned(rqjobs.fetch_job(job_id, conn), "worker lost: test")  # RQ's clean-up
        repairs = reconciler.pass_([run.id])
        assert [r.what for r in repairs] == [
            f"job {job_id}: worker lost before the node began (found by the reconciler)"
        ]
        assert conn.lpos(keys.queue_key(queue_name), job_id) == 0  # back at the head
        node = run.status().nodes["start"]
        assert (node.state, node.attempts) == ("queued", 0)
        assert conn.hget(runkeys.nodes_key(run.id), "start:redriven") == str(lost).encode()
    _taken_and_lost(conn, job_id, queue_name)  # once more: it fails the usual way, and ends
    reconciler.pass_([run.id])
    reconciler.pass_([run.id])
    final = run.status()
    assert final.state == "failed"
    assert "its attempt never began" in (final.nodes["start"].error or "")
    assert [final.nodes[n].state for n in ("lost", "after")] == [
        "upstream_failed",
        "upstream_failed",
    ]


def test_a_map_lost_after_its_expansion_is_left_to_its_items(conn: redis.Redis) -> None:
    run = loader.load(pipeline("lease", "mapped")).submit(conn)
    nodes = runkeys.nodes_key(run.id)
    conn.hset(nodes, mapping={"square:state": "running", "square:expanded": "1"})
    job = rqjobs.fetch_job(keys.job_id(run.id, "square"), conn)
    abandoned(job, "worker lost: test")
    assert conn.hget(nodes, "square:state") == b"running"  # its items are out: not failed
    conn.hdel(nodes, "square:expanded")
    abandoned(job, "worker lost: test")  # lost mid-expansion: retried by its rule (retry=1)
    assert conn.hget(nodes, "square:state") == b"queued"


def _stop_without_a_horse(redis_url: str) -> None:
    os.setpgrp()  # what a wrongly aimed kill hits is this child's group, not the test's
    worker = make_worker(
        [loader.load(pipeline("lease", "doomed"))], redis.Redis.from_url(redis_url)
    )
    assert worker.horse_pid == 0
    worker.kill_horse()  # a cancel's stop command for a job whose horse has just ended
    os._exit(0)


def test_a_stop_for_a_horse_that_has_ended_leaves_the_worker_alive(redis_url: str) -> None:
    # RQ's kill_horse is os.killpg(os.getpgid(horse_pid)): with no horse, its own group
    child = multiprocessing.get_context("fork").Process(
        target=_stop_without_a_horse, args=(redis_url,)
    )
    child.start()
    child.join(30)
    assert child.exitcode == 0, f"the worker process ended with {child.exitcode}"
