"""DAG versions with real workers: a rolling upgrade loses no run and fails no node, a run
waiting for a version nobody serves says so, `dagrq workers` lists what is served, and
`dagrq upgrade` moves a run to another version (or refuses, in one line)."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import redis

from dagrq import loader
from dagrq.store import keys, rqjobs, scripts
from dagrq.store.fleet import served_versions

from .helpers import Workers, failure_of, pipeline, wait_for

V1, V2, V3 = (pipeline(f"versions_v{n}") for n in (1, 2, 3))
ROOT = Path(__file__).resolve().parents[1]


def dagrq(*args: str, url: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dagrq", *args, "--url", url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_rolling_upgrade_loses_no_run_and_fails_no_node(
    conn: redis.Redis, workers: Workers
) -> None:
    v1, v2 = loader.load(V1), loader.load(V2)
    old = workers.start(V1, 1, "-c", "1")
    old_runs = [v1.submit(conn, seconds=1.0) for _ in range(3)]
    new_runs = [v2.submit(conn, seconds=0.1) for _ in range(3)]  # deployed, no worker yet
    waiting = new_runs[0].status()
    assert waiting.version == v2.plan_hash and waiting.unserved == [v2.queues[0]]
    why = new_runs[0].explain("first").waiting or ""
    assert f"waiting for a worker that serves version {v2.plan_hash} of DAG 't_versions'" in why
    workers.start(V2, 1, "-c", "1")
    both = wait_for(lambda: len([v for v in served_versions(conn) if v.workers]) == 2, 30, "up")
    assert both
    for run in new_runs:
        assert run.wait(timeout=60).state == "succeeded"
        assert run.results() == {"first": "v2", "second": "v2+v2"}  # only version 2's code ran it
    for run in old_runs:
        assert run.wait(timeout=60).state == "succeeded"
        assert run.results() == {"first": "v1", "second": "v1+v1"}
    old[0].send_signal(signal.SIGTERM)  # A's runs have ended: stop A
    assert old[0].wait(timeout=30) == 0
    for run in old_runs + new_runs:
        status = run.status()
        assert {n.attempts for n in status.nodes.values()} == {1}  # nothing failed or re-ran
    versions = {(v.version, len(v.workers)) for v in served_versions(conn)}
    assert versions == {(v2.plan_hash, 1)}


def test_dagrq_workers_lists_served_versions_and_runs_that_wait(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    v1, v2 = loader.load(V1), loader.load(V2)
    workers.start(V2, 1, "-c", "2")
    wait_for(lambda: served_versions(conn), 30, "workers registered")
    v1.submit(conn)  # nobody serves version 1
    listing = dagrq("workers", V2, url=redis_url)
    assert listing.returncode == 0, listing.stderr
    lines = {
        line.split("│")[2].strip(): line for line in listing.stdout.splitlines() if "│" in line
    }
    assert "this code" in lines[v2.plan_hash] and " 2 " in lines[v2.plan_hash]
    assert "no worker: its runs wait" in lines[v1.plan_hash]
    status = dagrq("status", v1.submit(conn).id, url=redis_url)
    assert status.returncode == 3
    assert f"waiting for a worker that serves version {v1.plan_hash}" in " ".join(
        status.stdout.split()
    )


def test_upgrade_moves_a_waiting_run_to_the_new_version(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    v1, v2 = loader.load(V1), loader.load(V2)
    run = v1.submit(conn)  # version 1 was retired before its run could start
    done = dagrq("upgrade", run.id, V2, url=redis_url)
    assert done.returncode == 0, done.stderr
    assert f"moved from version {v1.plan_hash} to {v2.plan_hash}" in done.stdout
    assert run.status().version == v2.plan_hash
    assert conn.llen(keys.queue_key(v1.plan.rq_queue(v1.queues[0]))) == 0
    workers.start(V2, 1, "-c", "1")
    assert run.wait(timeout=60).state == "succeeded"
    assert run.results() == {"first": "v2", "second": "v2+v2"}
    events = [e for e in run.events(follow=False) if e.get("version")]
    assert [e["version"] for e in events] == [v2.plan_hash]


def test_upgrade_after_a_failure_lets_retry_run_the_fix(
    conn: redis.Redis, workers: Workers
) -> None:
    v1, v2 = loader.load(V1), loader.load(V2)
    workers.start(V1, 1, "-c", "1")
    run = v1.submit(conn, seconds=-1)  # version 1's first fails: sleep length is negative
    failure = failure_of(run)
    assert failure.failed["first"].startswith("ValueError")
    workers.stop()  # version 1 retired; version 2 has the fix
    assert run.upgrade(v2).version == v2.plan_hash
    assert run.resume().state == "running"
    workers.start(V2, 1, "-c", "1")
    assert run.wait(timeout=60).state == "succeeded"
    assert run.results() == {"first": "v2", "second": "v2+v2"}


def test_upgrade_refuses_a_changed_graph_and_a_version_still_served(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    v1 = loader.load(V1)
    run = v1.submit(conn, seconds=30)
    changed = dagrq("upgrade", run.id, V3, url=redis_url)
    assert changed.returncode == 2
    assert one_line(changed).endswith(
        "nodes added: third; finish or cancel it, and submit a new run"
    )
    workers.start(V1, 1, "-c", "1")
    wait_for(lambda: run.status().nodes["first"].state == "running", 30, "first running")
    served = dagrq("upgrade", run.id, V2, url=redis_url)
    assert served.returncode == 2
    assert f"version {v1.plan_hash} of DAG 't_versions' still has live workers" in one_line(served)
    assert run.status().version == v1.plan_hash  # nothing changed
    run.cancel()


def test_rehome_moves_a_job_from_every_place_it_can_wait(conn: redis.Redis) -> None:
    old, new = "q@v1", "q@v2"
    (o_list, o_claimed, o_scheduled, o_started), _ = rqjobs.home_keys(old)
    _, (n_list, n_scheduled, n_started, n_bell) = rqjobs.home_keys(new)
    places = {"queued": "j1", "claimed": "j2", "scheduled": "j3", "started": "j4", "none": "j5"}
    for job_id in places.values():
        conn.hset(keys.RQ_JOB_PREFIX + job_id, mapping={"origin": old, "status": "queued"})
    conn.rpush(o_list, "other", "j1")
    conn.rpush(o_claimed, "j2")
    conn.zadd(o_scheduled, {"j3": 1234.0})
    conn.zadd(o_started, {"j4:exec1": 99.0, "j40:exec": 5.0})
    old_keys, _ = rqjobs.home_keys(old)
    _, new_keys = rqjobs.home_keys(new)
    with conn.pipeline(transaction=False) as pipe:
        moves = [(j, new, old_keys, new_keys) for j in [*places.values(), "gone"]]
        scripts.rehome_calls(conn, pipe, moves)
        answers = [a.decode() for a in pipe.execute()]
    assert answers == ["queued", "queued", "scheduled", "started", "origin", "gone"]
    assert conn.lrange(o_list, 0, -1) == [b"other"] and conn.llen(o_claimed) == 0
    assert conn.lrange(n_list, 0, -1) == [b"j1", b"j2"] and conn.llen(n_bell) == 2
    assert conn.zrange(n_scheduled, 0, -1, withscores=True) == [(b"j3", 1234.0)]
    assert conn.zrange(n_started, 0, -1, withscores=True) == [(b"j4:exec1", 99.0)]
    assert conn.zrange(o_started, 0, -1) == [b"j40:exec"]  # another job's lease stays
    origins = {conn.hget(keys.RQ_JOB_PREFIX + j, "origin") for j in places.values()}
    assert origins == {new.encode()} and not conn.exists(keys.RQ_JOB_PREFIX + "gone")


def one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]
