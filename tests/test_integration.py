"""End to end on a real Redis with real `dagrq worker` processes."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from dagrq import ParameterError, Run, RunNotFound, loader
from dagrq.errors import CycleError

from .helpers import Workers, failure_of, pipeline


def test_distributed_etl_equals_run_local(conn: redis.Redis, workers: Workers) -> None:
    address = "examples/etl.py:dag"
    dag = loader.load(address)
    workers.start(address, 2)
    run = dag.submit(conn, rows=300, seed=11)
    final = run.wait(timeout=120)
    assert final.state == "succeeded"
    assert run.results() == dag.run_local(rows=300, seed=11)
    assert set(final.nodes) == set(dag.specs)
    assert all(n.state == "succeeded" and n.attempts == 1 for n in final.nodes.values())


def test_200_concurrent_diamonds_on_4_workers_fire_each_join_exactly_once(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline("diamond"))
    workers.start(pipeline("diamond"), 4)
    runs = [dag.submit(conn, x=i) for i in range(200)]
    for i, run in enumerate(runs):
        final = run.wait(timeout=180)
        assert final.state == "succeeded"
        assert run.result("d") == {"b": 2 * i, "c": 3 * i, "sum": 5 * i}
    executions = [int(conn.get(f"test:d-executions:{run.id}") or 0) for run in runs]
    assert executions == [1] * 200


def test_every_key_of_a_finished_run_has_a_ttl_and_no_join_context_is_left(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline("diamond"))
    workers.start(pipeline("diamond"), 2)
    run = dag.submit(conn, x=1)
    run.wait(timeout=60)
    mine = [k.decode() for k in conn.scan_iter(count=1000) if run.id in k.decode()]
    assert any(k.startswith("dagrq:run:") for k in mine)
    assert any(k.startswith("rq:job:") for k in mine)
    assert not [k for k in mine if ":join:" in k]
    no_ttl = {k: conn.ttl(k) for k in mine if conn.ttl(k) < 0}
    assert no_ttl == {}


def test_a_failing_node_fails_the_run_skips_downstream_and_the_run_ends(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline("failing"))
    workers.start(pipeline("failing"), 2)
    run = dag.submit(conn)
    failure = failure_of(run)
    assert failure.failed == {"boom": "ValueError: bad input 1"}
    status = run.status()
    assert status.state == "failed"
    states = {n: s.state for n, s in status.nodes.items()}
    assert states == {
        "a": "succeeded",
        "boom": "failed",
        "after_boom": "upstream_failed",
        "fine": "succeeded",
    }
    assert "Traceback" in (status.nodes["boom"].traceback or "")
    assert run.results() == {"a": 1, "fine": 2}


def test_a_refused_submit_writes_nothing(conn: redis.Redis) -> None:
    dag = loader.load(pipeline("diamond"))
    conn.set("sentinel", 1)
    before = conn.dbsize()
    with pytest.raises(ParameterError):
        dag.submit(conn, x="not a number")
    with pytest.raises(ParameterError):
        dag.submit(conn)
    with pytest.raises(CycleError):
        loader.load(pipeline("cyclic")).submit(conn)
    assert conn.dbsize() == before


def test_run_fetch_reattaches_from_another_connection(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    dag = loader.load(pipeline("diamond"))
    run = dag.submit(conn, x=4)
    other = redis.Redis.from_url(redis_url)
    again = Run.fetch(run.id, connection=other)
    assert again.status().state == "running"
    workers.start(pipeline("diamond"), 1)
    again.wait(timeout=60)
    assert again.results() == {"a": 4, "b": 8, "c": 12, "d": {"b": 8, "c": 12, "sum": 20}}
    with pytest.raises(RunNotFound):
        Run.fetch("no-such-run", connection=other)


def test_node_timings_and_attempts_are_recorded(conn: redis.Redis, workers: Workers) -> None:
    dag = loader.load(pipeline("diamond"))
    workers.start(pipeline("diamond"), 2)
    started = time.time()
    final = dag.submit(conn, x=2, pause_ms=50).wait(timeout=60)
    for name, node in final.nodes.items():
        assert node.attempts == 1, name
        assert node.started_at is not None and node.ended_at is not None
        assert started - 1 < node.started_at <= node.ended_at
    assert final.nodes["b"].duration_s is not None and final.nodes["b"].duration_s >= 0.05


def test_a_dagrq_worker_refuses_jobs_naming_any_other_callable(
    conn: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    from rq import Queue
    from rq.serializers import JSONSerializer

    marker = tmp_path / "pwned"
    served = loader.load(pipeline("diamond")).plan.rq_queues[0]  # dagrq.t_diamond@<version>
    queue = Queue(served, connection=conn, serializer=JSONSerializer)
    job = queue.enqueue("os.system", f"touch {marker}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dagrq",
            "worker",
            pipeline("diamond"),
            "--url",
            redis_url,
            "--burst",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert not marker.exists()
    job.refresh()
    assert job.get_status() == "failed"
    result = job.latest_result()
    assert result is not None
    assert "a dagrq worker runs only dagrq.runtime.execute_node" in (result.exc_string or "")
