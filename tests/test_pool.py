"""The supervised pool of `dagrq worker`, with real processes: a process that dies mid-node is
replaced and its node retried at once; a node blocked past its timeout is stopped; one worker
serves several pipelines; SIGTERM drains; processes retire after --max-jobs-per-process and
die with their supervisor."""

from __future__ import annotations

import random
import signal
import time
from functools import partial
from types import SimpleNamespace

import psutil
import pytest
import redis

from dagrq import loader
from dagrq.errors import NodeStopped
from dagrq.store import runkeys
from dagrq.workers.leased import STOP_SIGNAL, LeasedSimpleWorker

from .helpers import Workers, dagrq, failure_of, pipeline, wait_for


def test_a_node_that_ends_its_process_is_retried_at_once_and_the_run_ends(
    conn: redis.Redis, workers: Workers
) -> None:
    address = pipeline("pooled", "exits_once")
    procs = workers.start(address, 1, "-c", "1")  # the default 60 s lease
    started = time.monotonic()
    run = loader.load(address).submit(conn)
    final = run.wait(timeout=60)
    took = time.monotonic() - started
    print(f"os._exit retried; run ended in {took:.1f} s")
    assert final.state == "succeeded", final.failed()
    assert final.nodes["vanish_once"].attempts == 2
    assert took < 20  # the supervisor settled it, not the 60 s lease
    requeued = [
        e for e in run.events(follow=False) if e["node"] == "vanish_once" and e.get("error")
    ]
    assert [e["error"] for e in requeued] == ["worker lost: its process died (exit status 9)"]
    assert procs[0].poll() is None  # the worker serves on


def test_a_node_blocked_past_its_timeout_is_stopped_and_the_pool_serves_on(
    conn: redis.Redis, workers: Workers
) -> None:
    address = pipeline("pooled", "blocked")
    procs = workers.start(address, 1, "-c", "1")
    started = time.monotonic()
    run = loader.load(address).submit(conn)
    failure = failure_of(run, timeout=90)
    took = time.monotonic() - started
    print(f"blocked nodes stopped; run ended in {took:.1f} s")
    assert failure.failed == {
        "masked_sleep": "timed out after 1 s (it did not stop; its process was killed)",
        "silent_socket": "timed out after 1 s",  # RQ's own interrupt reaches select()
    }
    assert run.status().nodes["report"].state == "succeeded"  # all_done: a process ran it
    assert took < 30  # 1 s timeout + 5 s grace, twice at most, on a busy machine
    assert procs[0].poll() is None


def test_one_worker_serves_two_pipelines(conn: redis.Redis, workers: Workers) -> None:
    workers.start(pipeline("diamond"), 1, pipeline("pooled", "pids"), "-c", "2")
    diamond = loader.load(pipeline("diamond")).submit(conn, x=3)
    pids = loader.load(pipeline("pooled", "pids")).submit(conn, n=6)
    assert diamond.wait(timeout=60).state == "succeeded"
    assert pids.wait(timeout=60).state == "succeeded"
    assert diamond.result("d") == {"b": 6, "c": 9, "sum": 15}
    assert len(pids.result("pid_of")) == 6


def test_processes_retire_after_max_jobs(conn: redis.Redis, workers: Workers) -> None:
    address = pipeline("pooled", "pids")
    workers.start(address, 1, "-c", "1", "--max-jobs-per-process", "4")
    run = loader.load(address).submit(conn, n=12)
    assert run.wait(timeout=60).state == "succeeded"
    # 14 jobs (items, the map's own, 12 items) on one slot, 4 per process: 4 processes
    assert len(set(run.result("pid_of"))) >= 3


def test_a_burst_pool_replaces_retired_processes_until_its_queues_are_empty(
    conn: redis.Redis, redis_url: str
) -> None:
    address = pipeline("pooled", "pids")
    run = loader.load(address).submit(conn, n=5)
    burst = dagrq(
        "worker", address, "--url", redis_url, "--burst", "-c", "1",
        "--max-jobs-per-process", "1",
    )  # fmt: skip
    assert burst.returncode == 0, burst.stderr
    assert run.status().state == "succeeded"  # 7 jobs, one per process: no job left queued
    assert len(set(run.result("pid_of"))) == 5


def test_sigterm_drains_running_nodes_and_starts_no_new_one(
    conn: redis.Redis, workers: Workers
) -> None:
    address = pipeline("pooled", "slow")
    procs = workers.start(address, 1, "-c", "1", "--drain-timeout", "60")
    run = loader.load(address).submit(conn, seconds=3)
    wait_for(lambda: conn.get(f"test:napping:{run.id}"), 30, "nap running")
    procs[0].send_signal(signal.SIGTERM)
    assert procs[0].wait(timeout=30) == 0
    status = run.status()
    assert status.nodes["nap"].state == "succeeded" and status.nodes["nap"].attempts == 1
    assert status.nodes["after_nap"].state == "queued"  # enqueued, but not taken: drained
    workers.start(address, 1, "-c", "1")
    assert run.wait(timeout=60).state == "succeeded"


@pytest.mark.parametrize(
    ("extra", "signals"),
    [(("--drain-timeout", "1"), 1), (("--drain-timeout", "60"), 2)],
    ids=["drain-time-up", "second-signal"],
)
def test_a_stop_that_cannot_wait_puts_running_nodes_back_without_spending_a_retry(
    conn: redis.Redis, workers: Workers, extra: tuple[str, ...], signals: int
) -> None:
    address = pipeline("pooled", "slow")
    procs = workers.start(address, 1, "-c", "1", *extra)
    run = loader.load(address).submit(conn, seconds=120)
    napper = int(wait_for(lambda: conn.get(f"test:napping:{run.id}"), 30, "nap running"))
    stopped = time.monotonic()
    for _ in range(signals):
        procs[0].send_signal(signal.SIGTERM)
        time.sleep(1.2)  # RQ ignores a repeat within a second
    assert procs[0].wait(timeout=30) == 0
    print(f"stopped in {time.monotonic() - stopped:.1f} s")
    assert not psutil.pid_exists(napper)
    status = run.status()
    assert status.state == "running"
    assert status.nodes["nap"].state == "queued"  # put back: nap has no retry= to spend
    workers.start(address, 1, "-c", "1")
    final = run.wait(timeout=60)
    assert final.state == "succeeded" and final.nodes["nap"].attempts == 2


def test_killing_the_supervisor_kills_its_processes(workers: Workers) -> None:
    procs = workers.start(pipeline("diamond"), 1, "-c", "2")
    top = psutil.Process(procs[0].pid)
    children = wait_for(lambda: top.children() if len(top.children()) >= 2 else None, 30, "pool")
    procs[0].send_signal(signal.SIGKILL)
    procs[0].wait(timeout=10)
    _, alive = psutil.wait_procs(children, timeout=10)
    assert alive == []


def test_a_running_node_is_interrupted_by_its_first_stop_only(conn: redis.Redis) -> None:
    """RQ's stop command and a lease renewal can both stop a canceled run's node: the second
    must not land in RQ's handling of the first (the job then stayed ``started`` until its
    lease ended, and ``cancel()`` waited for it)."""
    worker = LeasedSimpleWorker(["t_stop_once"], connection=conn)
    worker._running = (SimpleNamespace(id="job-1"), None)
    worker._stop_target = "job-1"
    with pytest.raises(NodeStopped):
        worker._on_stop_signal(STOP_SIGNAL, None)
    worker._stop_target = "job-1"  # the second stop
    worker._on_stop_signal(STOP_SIGNAL, None)
    assert worker._stopped_job_id == "job-1"


def test_sigterm_at_any_point_of_a_job_stops_the_pool_after_that_job(
    conn: redis.Redis, workers: Workers
) -> None:
    """SIGTERM lands at random points of a stream of short jobs (most of a job's time is RQ's
    bookkeeping of its end): every time, the pool stops within a second or two, long before
    its drain timeout (a stop lost in RQ's handling of a job kept a process serving until
    the drain ran out), and RQ records no job failed that dagrq recorded."""
    from rq.registry import FailedJobRegistry

    address = pipeline("pooled", "stream")
    dag = loader.load(address)
    queue = dag.plan.rq_queue(dag.specs["tick"].queue_name)
    rng = random.Random(20)
    took: list[float] = []
    for _ in range(8):
        run = dag.submit(conn, n=5_000)
        proc = workers.start(address, 1, "-c", "2", "--drain-timeout", "30")[0]
        expanded = partial(conn.hget, runkeys.nodes_key(run.id), "tick:expanded")
        wait_for(expanded, 30, "every item enqueued")  # that job is a long one
        done = partial(lambda r: r.status().nodes["tick"].items["done"] > 50, run)
        wait_for(done, 30, "items done")
        time.sleep(rng.uniform(0, 0.05))
        asked = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        took.append(time.monotonic() - asked)
        assert proc.returncode == 0
        items = run.status().nodes["tick"].items
        assert items is not None and items["failed"] == 0
        assert FailedJobRegistry(queue, connection=conn).count == 0
        assert items["executions"] == items["done"]  # every item begun ended, once
        run.cancel()
    print(f"pool stopped {took} s after SIGTERM")
    assert max(took) < 10  # the drain timeout is 30 s


def test_a_stop_noted_while_claiming_nothing_ends_the_dequeue_at_once(conn: redis.Redis) -> None:
    """SIGTERM landing while a worker claims and finds nothing (the moment a run's last job
    ended, when `dagrq run` stops its pool) must not wait on the queues' doorbells: that
    stop is only noted (the claim may have found a job), so the dequeue must honour it."""
    from rq import Queue
    from rq.exceptions import StopRequested

    from dagrq.workers.rqparts import HAND, ClaimingQueue

    queue = Queue("dagrq.test-empty", connection=conn)
    HAND.stop_noted = True
    try:
        started = time.monotonic()
        with pytest.raises(StopRequested):
            ClaimingQueue.dequeue_any([queue], 30, connection=conn)
        assert time.monotonic() - started < 5  # not after the 30 s wait
    finally:
        HAND.stop_noted = False
