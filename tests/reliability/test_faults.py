"""Faults around the workers and the server: Redis restarted and paused mid-run, a worker
killed holding RQ's maintenance lock, a job claimed by a worker that died before starting it,
a worker started before Redis, a server that persists nothing. Each bound is measured."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import redis
from rq.job import JobStatus

from dagrq import Run, loader
from dagrq.store import keys, rqjobs, runkeys, scripts
from dagrq.workers.leased import heartbeat_ttl

from ..helpers import pipeline, wait_for
from .servers import Fleet, RedisServer
from .storm import PIPELINE as STORM

LEASE_S = 5


def _all_end_right(conn: redis.Redis, dag: object, runs: list, timeout: float) -> None:  # type: ignore[type-arg]
    wait_for(
        lambda: all(conn.hget(runkeys.run_key(r.id), "state") != b"running" for r in runs),
        timeout,
        "every run ended",
    )
    for run in runs:
        final = run.status()
        assert final.state == "succeeded", (run.id, final.failed())
        assert run.results() == dag.run_local(**final.params)  # type: ignore[attr-defined]


def test_workers_ride_out_a_redis_restart_and_a_pause_of_three_leases(
    server: RedisServer, fleet: Fleet
) -> None:
    dag = loader.load(STORM)
    procs = fleet.start(STORM, 2, "--lease", str(LEASE_S))
    procs += fleet.start(STORM, 1, "--isolate", "--lease", str(LEASE_S))
    conn = server.client()
    runs = [dag.submit(conn, seed=i) for i in range(20)]
    wait_for(lambda: _nodes_ended(runs) > 10, 30, "mid-run")
    server.shutdown()  # AOF always: every acknowledged write is on disk
    time.sleep(3.0)  # the outage
    server.start()
    runs += [dag.submit(conn, seed=100 + i) for i in range(10)]
    ended = _nodes_ended(runs)
    wait_for(lambda: _nodes_ended(runs) > ended + 10, 30, "running again")
    server.pause()  # three leases without an answer
    time.sleep(3 * LEASE_S)
    server.resume()
    _all_end_right(conn, dag, runs, 120)
    assert [p.poll() for p in procs] == [None, None, None]  # the same three workers


def _nodes_ended(runs: list[Run]) -> int:
    """Nodes ended so far over ``runs`` (0 for a run that cannot be read now)."""
    total = 0
    for run in runs:
        with contextlib.suppress(redis.RedisError):
            total += sum(1 for n in run.status().nodes.values() if n.ended_at is not None)
    return total


def _kill_when_running(conn: redis.Redis, name: str, run_id: str) -> float:
    """SIGKILL the whole worker running the first attempt of ``name`` (its supervisor first,
    so no supervisor settles the node: only its lease can); return when."""
    pid = int(wait_for(lambda: conn.get(f"test:pid:{name}:{run_id}"), 60, f"{name} started"))
    supervisor = psutil.Process(pid).parent()
    assert supervisor is not None
    supervisor.kill()
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)  # it dies with its supervisor anyway
    return time.monotonic()


def _second_start(conn: redis.Redis, run_id: str, node: str) -> float:
    """Wait for the node's second attempt to start; return when it was seen."""

    def started() -> bool:
        return int(conn.hget(runkeys.nodes_key(run_id), f"{node}:attempts") or 0) >= 2

    wait_for(started, 60, f"{node} attempt 2")
    return time.monotonic()


def test_a_worker_killed_holding_rqs_maintenance_lock_delays_nothing(
    server: RedisServer, fleet: Fleet
) -> None:
    address = pipeline("lease", "retried")
    dag = loader.load(address)
    conn = server.client()
    for queue in dag.plan.rq_queues:  # as a worker that died while cleaning left it: 899 s
        conn.set(f"rq:clean_registries:{queue}", 1, ex=899)
        conn.set(f"rq:queue:{queue}:maintenance", "dead-worker", ex=899)
    fleet.start(address, 2, "--lease", str(LEASE_S))
    run = dag.submit(conn)
    killed = _kill_when_running(conn, "slow", run.id)
    redriven = _second_start(conn, run.id, "slow")
    took = redriven - killed
    print(f"worker killed -> node re-driven: {took:.1f} s (lease {LEASE_S} s)")
    assert took <= 2 * LEASE_S + 1  # the bound: two leases
    final = run.wait(timeout=60)
    assert final.state == "succeeded" and run.result("join") == {"slow_attempt": 2, "other": 2}


def test_a_whole_worker_sigkilled_leaves_no_process_and_its_node_re_runs_within_2_leases(
    server: RedisServer, fleet: Fleet
) -> None:
    """The supervisor of the worker holding a node is SIGKILLed (the machine, the OOM killer):
    2 s later no process of that worker is alive (its pool processes and RQ's scheduler die
    with it), and the node runs again on the other worker within two leases; 5 times."""
    address = pipeline("lease", "retried")
    dag = loader.load(address)
    conn = server.client()
    took: list[float] = []
    for _ in range(5):
        fleet.start(address, 2, "--lease", str(LEASE_S))
        run = dag.submit(conn)
        pid = int(wait_for(lambda r=run: conn.get(f"test:pid:slow:{r.id}"), 60, "slow started"))
        supervisor = psutil.Process(pid).parent()
        assert supervisor is not None
        family = [supervisor, *supervisor.children(recursive=True)]
        supervisor.kill()
        killed = time.monotonic()
        time.sleep(2)
        alive = [p.pid for p in family if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
        assert alive == [], f"still alive 2 s after the kill: {alive}"
        took.append(_second_start(conn, run.id, "slow") - killed)
        assert run.wait(timeout=60).state == "succeeded"
    print(f"whole worker SIGKILLed -> node re-run: {[round(s, 1) for s in took]} s, lease 5 s")
    assert max(took) < 2 * LEASE_S


def test_a_job_claimed_by_a_worker_that_died_before_starting_it_is_put_back(
    server: RedisServer, fleet: Fleet
) -> None:
    address = pipeline("diamond")
    dag = loader.load(address)
    conn = server.client()
    run = dag.submit(conn, x=2)
    claimed = scripts.claim(conn, [keys.queue_key(q) for q in dag.plan.rq_queues])  # "dies"
    assert claimed is not None and claimed[1].decode() == keys.job_id(run.id, "a")
    assert conn.llen(keys.queue_key(dag.plan.rq_queues[0])) == 0  # in no queue: only claimed
    lost_at = time.monotonic()
    fleet.start(address, 1, "--lease", str(LEASE_S))
    final = run.wait(timeout=60)
    took = time.monotonic() - lost_at
    print(f"claimed job put back and run ended in {took:.1f} s")
    assert final.state == "succeeded" and run.result("d") == {"b": 4, "c": 6, "sum": 10}
    assert took <= 2 * LEASE_S + 2
    assert int(conn.hget(runkeys.nodes_key(run.id), "a:redriven") or 0) == 1


def test_a_worker_started_before_redis_waits_for_it(tmp_path: Path) -> None:
    later = RedisServer(tmp_path / "later")
    fleet = Fleet(later.url, tmp_path / "logs")
    try:
        procs = fleet.start(pipeline("diamond"), 1)
        wait_for(lambda: "waiting for Redis at redis://127.0.0.1" in fleet.logs(), 30, "waiting")
        assert procs[0].poll() is None, fleet.logs()  # still there, waiting
        later.start()
        conn = later.client()
        run = loader.load(pipeline("diamond")).submit(conn, x=1)
        assert run.wait(timeout=60).state == "succeeded"
        assert "waiting for Redis at redis://127.0.0.1" in fleet.logs()
    finally:
        fleet.procs.stop()
        later.stop()


def test_a_server_that_persists_nothing_is_warned_about(tmp_path: Path) -> None:
    volatile = RedisServer(tmp_path / "volatile", args=["--appendonly", "no"]).start()
    fleet = Fleet(volatile.url, tmp_path / "logs")
    try:
        fleet.start(pipeline("diamond"), 1)
        wait_for(lambda: "persists nothing" in fleet.logs(), 30, "the warning")
        assert "a restart loses every run" in fleet.logs()
    finally:
        fleet.procs.stop()
        volatile.stop()


def test_a_stall_shorter_than_the_lease_never_starts_a_second_attempt(
    server: RedisServer, fleet: Fleet
) -> None:
    address = pipeline("cancel")
    dag = loader.load(address)
    conn = server.client()
    fleet.start(address, 2, "--lease", str(LEASE_S))
    run = dag.submit(conn, pause_s=3.0)
    wait_for(lambda: conn.get(f"test:slow-started:{run.id}"), 30, "slow started")
    server.pause()  # shorter than the lease: the node finishes meanwhile, reports after
    time.sleep(LEASE_S - 1)
    server.resume()
    final = run.wait(timeout=60)
    assert final.state == "succeeded"
    assert final.nodes["slow"].attempts == 1  # no second attempt was started
    assert final.reexecuted == 0
    assert heartbeat_ttl(LEASE_S) > LEASE_S  # the lease outlives a renewal due mid-stall


def _fail_as_rq_would(conn: redis.Redis, job_id: str, last_line: str) -> None:
    """Take a waiting job off its queue and record it failed with ``last_line``, as RQ does
    for a job that raised (a job whose worker lost Redis while reporting it: the report never
    arrived, RQ's record of the failure did)."""
    job = rqjobs.fetch_job(job_id, conn)
    assert conn.lrem(f"rq:queue:{job.origin}", 0, job_id) == 1
    with conn.pipeline() as pipe:
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        job._handle_failure(f"Traceback (most recent call last):\n  ...\n{last_line}\n", pipe)
        pipe.execute()


def _lose(conn: redis.Redis, job_id: str) -> None:
    """Take a waiting job off its queue and delete it, as a write lost with a primary leaves
    it (its enqueue was never copied to the replica promoted in its place)."""
    job = rqjobs.fetch_job(job_id, conn)
    assert conn.lrem(f"rq:queue:{job.origin}", 0, job_id) == 1
    assert conn.delete(job.key) == 1


def _reconcile_now(server: RedisServer, run_id: str) -> None:
    """``dagrq reconcile RUN --grace 0``: look at the run now, as a worker does every pass."""
    repaired = subprocess.run(
        [sys.executable, "-m", "dagrq", "reconcile", run_id, "--grace", "0", "--url", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert repaired.returncode == 0, repaired.stderr


def _status(conn: redis.Redis, job_id: str) -> str | None:
    return rqjobs.job_fields(conn, [job_id])[job_id].get("status")


@pytest.mark.parametrize(
    ("damage", "ends"),
    [
        ("failed: redis.exceptions.ConnectionError: Error 111 connecting to 127.0.0.1:1.", "ok"),
        ("lost", "ok"),
        ("failed: ValueError: the chunk's own error", "failed"),
    ],
)
def test_a_chunk_job_failed_because_redis_was_out_of_reach_or_lost_runs_again(
    server: RedisServer, fleet: Fleet, damage: str, ends: str
) -> None:
    """A chunk job whose failure RQ recorded but whose report never came runs again when the
    failure was Redis out of reach (not the items' fault), and one whose job is gone (lost
    with a primary) is enqueued again; a chunk job that failed for its own reason fails its
    items."""
    dag = loader.load(pipeline("gated"))
    conn = server.client()
    fleet.start(pipeline("gated"), 1)  # one process: chunk 0 runs (held), chunk 1 waits
    run = dag.submit(conn)
    held, waiting = (keys.chunk_job_id(run.id, "double", c) for c in (0, 1))
    wait_for(lambda: _status(conn, held) == "started", 60, "chunk 0 started")
    if damage == "lost":
        _lose(conn, waiting)
    else:
        _fail_as_rq_would(conn, waiting, damage.removeprefix("failed: "))
    _reconcile_now(server, run.id)
    redriven = int(conn.hget(runkeys.nodes_key(run.id), "double:redriven") or 0)
    conn.set(f"test:gate:{run.id}", 1)
    wait_for(lambda: run.status().state != "running", 60, "the run ended")
    final = run.status()
    if ends == "ok":
        assert final.state == "succeeded", final.failed()
        assert redriven == 1 and run.result("total") == 12
    else:
        assert final.state == "failed" and redriven == 0
        assert final.failed() == {
            "double": "2 of 4 items failed; first: item 2: its job ended without reporting "
            f"({damage.removeprefix('failed: ')})"
        }


def test_a_node_job_lost_with_a_primary_is_made_again(server: RedisServer, fleet: Fleet) -> None:
    """A node's own job gone while its run runs (its enqueue never reached the promoted
    replica) is made and enqueued again, not left to fail the node."""
    dag = loader.load(pipeline("gated"))
    conn = server.client()
    fleet.start(pipeline("gated"), 1)
    holding = dag.submit(conn)  # its chunk 0 holds the only process
    held = keys.chunk_job_id(holding.id, "double", 0)
    wait_for(lambda: _status(conn, held) == "started", 60, "the process held")
    run = dag.submit(conn)  # its root's job waits in the queue
    _lose(conn, keys.job_id(run.id, "numbers"))
    _reconcile_now(server, run.id)
    assert _status(conn, keys.job_id(run.id, "numbers")) is not None  # made again
    for each in (holding, run):
        conn.set(f"test:gate:{each.id}", 1)
    for each in (holding, run):
        wait_for(lambda r=each: r.status().state != "running", 60, "the run ended")
        final = each.status()
        assert final.state == "succeeded", final.failed()
        assert each.result("total") == 12
    assert int(conn.hget(runkeys.nodes_key(run.id), "numbers:redriven") or 0) >= 1
