"""Hostile and broken input on dagrq's queues: other callables (JSON or pickle payloads),
planted callbacks, garbage ids and hashes, forged node jobs under a secret, a planted pickle
for the client. Nothing of it runs, nothing stops a worker, the good runs still finish."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import redis
from rq import Callback, Queue
from rq.registry import FailedJobRegistry
from rq.serializers import DefaultSerializer, JSONSerializer

from dagrq import RunError, loader
from dagrq.client import Run
from dagrq.store import keys, rqjobs, runkeys

from ..helpers import pipeline, wait_for
from .servers import Fleet, RedisServer


class Boom:
    """Unpickling this runs a command: the payload a writer to Redis could plant."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return os.system, (f"touch {self.marker}",)


def test_garbage_and_foreign_jobs_run_nothing_and_stop_no_worker(
    server: RedisServer, fleet: Fleet, tmp_path: Path
) -> None:
    address = pipeline("diamond")
    dag = loader.load(address)
    conn: redis.Redis = server.client()
    queue_name = dag.plan.rq_queues[0]
    marker = tmp_path / "pwned"
    procs = fleet.start(address, 1, "--lease", "5")
    procs += fleet.start(address, 1, "--isolate", "--lease", "5")
    good = [dag.submit(conn, x=i) for i in range(3)]
    as_json = Queue(queue_name, connection=conn, serializer=JSONSerializer)
    as_pickle = Queue(queue_name, connection=conn, serializer=DefaultSerializer)
    foreign = [
        as_json.enqueue("os.system", f"touch {marker}"),  # another callable
        as_pickle.enqueue("os.system", f"touch {marker}"),  # a pickle payload
        as_json.enqueue(  # dagrq's entry point, a planted callback
            keys.ENTRYPOINT,
            kwargs={"dag": dag.name, "run": "nope", "node": "a"},
            on_failure=Callback("os.system"),
        ),
        as_json.enqueue(  # a node the DAG does not have
            keys.ENTRYPOINT, kwargs={"dag": dag.name, "run": good[0].id, "node": "zz"}
        ),
    ]
    conn.hset("rq:job:garbage", mapping={"data": b"\x80\x04not json", "status": "queued"})
    conn.rpush(keys.queue_key(queue_name), b"garbage", b"\xff\xfe\xfd", *[b"x" * 300] * 2)
    conn.rpush(keys.queue_key(queue_name), pickle.dumps(Boom(marker)))
    for run in good:
        assert run.wait(timeout=60).state == "succeeded"
    wait_for(lambda: conn.llen(keys.queue_key(queue_name)) == 0, 30, "the queue drained")
    registry = FailedJobRegistry(queue_name, connection=conn)
    refused = {foreign[i].id for i in (0, 1, 3)}
    wait_for(lambda: refused <= set(registry.get_job_ids()), 30, "the foreign jobs refused")
    wait_for(lambda: foreign[2].get_status(refresh=True) == "finished", 30, "the no-op done")
    assert not marker.exists()  # nothing ran, nothing was unpickled
    assert [p.poll() for p in procs] == [None, None]  # no worker quit
    failed = set(FailedJobRegistry(queue_name, connection=conn).get_job_ids())
    for i in (0, 1, 3):
        assert foreign[i].id in failed, i
    planted = foreign[2]  # dagrq's own entry point for a run that does not exist: a no-op
    assert planted.get_status(refresh=True) == "finished"
    assert planted.latest_result().return_value == {"node": "a", "outcome": None, "run": "gone"}
    reasons = {j.id: (conn.hget(f"rq:job:{j.id}", "exc_info") or b"").decode() for j in foreign}
    results = {j.id: (j.latest_result().exc_string if j.latest_result() else "") for j in foreign}
    assert "cannot be read" in reasons[foreign[1].id]
    assert "runs only dagrq.runtime.execute_node" in (results[foreign[0].id] or "")
    assert "has no node 'zz'" in (results[foreign[3].id] or "")
    assert "garbage" in failed  # a hash that is not JSON
    rejected = [r.decode() for r in conn.lrange(keys.rejected_key(), 0, -1)]
    assert any("not text" in r for r in rejected)  # the id that is not UTF-8


def test_a_worker_with_a_secret_refuses_forged_node_jobs(
    server: RedisServer, fleet: Fleet, monkeypatch: pytest.MonkeyPatch
) -> None:
    address = pipeline("diamond")
    dag = loader.load(address)
    conn: redis.Redis = server.client()
    monkeypatch.setenv("DAGRQ_SECRET", "s3cret")  # the client signs what it submits
    fleet.procs.env["DAGRQ_SECRET"] = "s3cret"
    fleet.start(address, 1)
    run = dag.submit(conn, x=5)
    assert run.wait(timeout=60).state == "succeeded"
    forged = dag.submit(conn, x=6)
    forged.cancel()
    # a writer without the key makes a node job by hand for a fresh run's root
    victim = dag.submit(conn, x=7)
    victim.cancel()  # a worker may have begun its genuine root meanwhile: count from here
    begun = int(conn.hget(runkeys.nodes_key(victim.id), "a:attempts") or 0)
    conn.hset(runkeys.run_key(victim.id), "state", "running")
    job_id = (
        Queue(dag.plan.rq_queues[0], connection=conn, serializer=JSONSerializer)
        .enqueue(keys.ENTRYPOINT, kwargs={"dag": dag.name, "run": victim.id, "node": "a"})
        .id
    )
    # the forged job itself (the victim's genuine root, stopped by the cancel, may fail too)
    wait_for(
        lambda: job_id in FailedJobRegistry(dag.plan.rq_queues[0], connection=conn).get_job_ids(),
        30,
        "refused",
    )
    result = rqjobs.fetch_job(job_id, conn).latest_result()
    assert result is not None
    assert "not signed with this worker's DAGRQ_SECRET" in (result.exc_string or "")
    attempts = int(conn.hget(runkeys.nodes_key(victim.id), "a:attempts") or 0)
    assert attempts == begun  # the forged job never started an attempt


def test_the_client_never_unpickles_unless_told_and_refuses_a_planted_plan(
    server: RedisServer, fleet: Fleet, tmp_path: Path
) -> None:
    address = pipeline("pickled")
    dag = loader.load(address)
    conn: redis.Redis = server.client()
    fleet.start(address, 1)
    run = dag.submit(conn, word="abba")
    run.wait(timeout=60)
    assert Run.fetch(run.id, connection=conn, dag=dag).result("letters") == {"a", "b"}
    assert Run.fetch(run.id, connection=conn, allow_pickle=True).result("letters") == {"a", "b"}
    marker = tmp_path / "pwned"
    conn.set(runkeys.output_key(run.id, "letters"), pickle.dumps(Boom(marker)))  # planted
    with pytest.raises(RunError, match="pickled outputs"):
        Run.fetch(run.id, connection=conn).result("letters")  # Redis says pickle: not enough
    assert not marker.exists()
    # a JSON DAG's plan edited to say pickle no longer matches its hash: refused outright
    json_dag = loader.load(pipeline("diamond"))
    fleet.start(pipeline("diamond"), 1)
    other = json_dag.submit(conn, x=1)
    other.wait(timeout=60)
    plan_key = runkeys.plan_key(json_dag.name, json_dag.plan_hash)
    planted = json.loads(conn.get(plan_key) or b"{}")
    planted["serializer"] = "pickle"
    conn.set(plan_key, json.dumps(planted))
    conn.set(runkeys.output_key(other.id, "a"), pickle.dumps(Boom(marker)))
    from dagrq.store import runs as store

    store._PLANS.pop(json_dag.plan_hash, None)  # as a fresh client process would
    with pytest.raises(RunError, match="it was edited in Redis"):
        Run.fetch(other.id, connection=conn).result("a")
    assert not marker.exists()
    store._PLANS.pop(json_dag.plan_hash, None)
