"""@dag.map with real workers: widths, order, chunks, maps of maps, failures, duplicates."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import redis
from hypothesis import given
from hypothesis import strategies as st

from dagrq import DAG, NodeDefinitionError, RunFailed, UnknownNodeError, loader
from dagrq.jobs.attempt import Attempt
from dagrq.jobs.fanout import batches, expand
from dagrq.model import queues
from dagrq.store import keys, runkeys, scripts
from dagrq.store.runs import RunStore

from .helpers import VERSION, Workers, failure_of, fake_run, pipeline, spec, wait_for


@pytest.fixture
def maps(conn: redis.Redis, workers: Workers) -> DAG:
    workers.start(pipeline("maps"), 2)
    return loader.load(pipeline("maps"))


@pytest.mark.parametrize("width", [0, 1, 1000])
def test_widths_results_in_item_order_and_equal_to_run_local(
    conn: redis.Redis, maps: DAG, width: int
) -> None:
    run = maps.submit(conn, n=width)
    final = run.wait(timeout=240)
    assert final.state == "succeeded"
    results = run.results()
    assert results["parse"] == [3 * i for i in range(width)]
    assert results["double"] == [6 * i for i in range(width)]
    assert results["parse_chunked"] == results["parse"]
    assert results["total"] == {
        "n": width,
        "sum": 3 * sum(range(width)),
        "double": 6 * sum(range(width)),
    }
    assert results == maps.run_local(n=width)
    items = final.nodes["parse"].items
    assert items == {
        "total": width,
        "queued": 0,
        "running": 0,
        "done": width,
        "failed": 0,
        "canceled": 0,
        "executions": width,  # counted exactly: every item ran once
    }
    assert final.reexecuted == (1 if width > 3 else 0)  # flaky's item 3 fails once by design
    assert not [k for k in conn.scan_iter(f"dagrq:run:{{{run.id}}}:join:*")]


def test_expansion_enqueues_one_rq_job_per_chunk(conn: redis.Redis) -> None:
    dag = loader.load(pipeline("maps"))
    run_id = uuid.uuid4().hex
    items = dag.codec.dumps(list(range(250)))
    for node, count in (("parse_chunked", 3), ("parse", 250)):
        mapped = dag.specs[node]
        attempt = Attempt(
            dag=dag,
            store=RunStore(conn, run_id, dag.plan),
            spec=mapped,
            job=None,
            number=1,
            params={},
            outputs={"files": items, "config": None},
        )
        expand(attempt)
        queued = [
            j.decode()
            for j in conn.lrange(keys.queue_key(dag.plan.rq_queue(mapped.queue_name)), 0, -1)
        ]
        assert queued == [keys.chunk_job_id(run_id, node, c) for c in range(count)]
        assert conn.hget(runkeys.nodes_key(run_id), f"{node}:items_total") == b"250"
        conn.delete(keys.queue_key(dag.plan.rq_queue(mapped.queue_name)))
    assert conn.hlen(runkeys.items_key(run_id, "parse_chunked")) == 250


def test_a_failed_item_is_none_under_all_done_and_skips_all_success(
    conn: redis.Redis, maps: DAG
) -> None:
    run = maps.submit(conn, n=6, fail_at=4)
    failure = failure_of(run)
    assert failure.failed == {
        "parse": "1 of 6 items failed; first: item 4: ValueError: item 4 is bad"
    }
    status = run.status()
    assert status.nodes["parse"].items == {
        "total": 6,
        "queued": 0,
        "running": 0,
        "done": 6,
        "failed": 1,
        "canceled": 0,
        "executions": 6,
    }
    assert status.nodes["double"].state == "upstream_failed"
    assert status.nodes["total"].state == "upstream_failed"
    assert run.result("tolerant") == [0, 3, 6, 9, None, 15]


def test_status_shows_a_mapped_node_as_one_row_with_counts(
    conn: redis.Redis, maps: DAG, redis_url: str
) -> None:
    run = maps.submit(conn, n=6, fail_at=4)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    shown = subprocess.run(
        [sys.executable, "-m", "dagrq", "status", run.id, "--url", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    row = next(ln for ln in shown.stdout.splitlines() if ln.startswith("│ parse "))
    assert "6 items: 0 queued · 0 running · 6 done · 1 failed" in row


def test_a_failing_item_in_a_chunk_is_retried_on_its_own(conn: redis.Redis, maps: DAG) -> None:
    run = maps.submit(conn, n=10)
    run.wait(timeout=60)
    assert run.result("flaky") == list(range(10))
    attempts = {i: int(conn.get(f"test:flaky:{run.id}:{i}") or 0) for i in range(10)}
    # only item 3 ran again: the chunk was not retried as a whole
    assert attempts == {i: 2 if i == 3 else 1 for i in range(10)}


def test_a_duplicate_item_delivery_counts_once(conn: redis.Redis) -> None:
    m = spec("m", ("src",), children=("j",), map_over="src")
    j = spec("j", ("m",), is_join=True)
    run_id = fake_run(conn, {"m": "running", "j": "pending"}, **{"m:items_total": 3})
    for _ in range(3):
        done = scripts.record_items(
            conn, run_id, m, [j], ttl_s=60, version=VERSION, results=[(0, b"10")]
        )
        assert done.fired == ()
    assert conn.hget(runkeys.nodes_key(run_id), "m:items_done") == b"1"
    scripts.record_items(
        conn, run_id, m, [j], ttl_s=60, version=VERSION, results=[(1, b"11"), (0, b"99")]
    )
    assert conn.hget(runkeys.nodes_key(run_id), "m:items_done") == b"2"
    done = scripts.record_items(
        conn, run_id, m, [j], ttl_s=60, version=VERSION, results=[(2, b"12")]
    )
    assert done.fired == ("j",)
    again = scripts.record_items(
        conn, run_id, m, [j], ttl_s=60, version=VERSION, results=[(2, b"12")]
    )
    assert again.fired == ()
    assert conn.hgetall(runkeys.map_results_key(run_id, "m")) == {
        b"0": b"10",
        b"1": b"11",
        b"2": b"12",
    }
    assert conn.llen(keys.queue_key(queues.versioned_queue("q.test", VERSION))) == 1


def test_map_declarations_are_validated() -> None:
    d = DAG("map_checks")
    with pytest.raises(NodeDefinitionError, match="chunk=0"):
        d.map("files", chunk=0)
    d.map("nowhere")(bad_target)
    with pytest.raises(UnknownNodeError, match="'nowhere' names no node"):
        d.validate()
    e = DAG("map_param")
    e.node(source)
    e.map("source")(no_item_param)
    with pytest.raises(NodeDefinitionError, match="needs a parameter named 'source'"):
        e.validate()


def test_a_map_and_its_children_are_joins() -> None:
    maps = loader.load(pipeline("maps"))
    assert set(maps.joins) == {"parse", "parse_chunked", "total", "tolerant"}
    assert maps.specs["double"].is_join is False  # a map of a map goes item by item


def bad_target(nowhere: int) -> int:
    return nowhere


def source() -> list[int]:
    return [1]


def no_item_param(x: int) -> int:
    return x


@given(st.integers(min_value=0, max_value=20_000), st.integers(1, 100), st.integers(100, 2000))
def test_job_batches_cover_every_chunk_once_and_start_small(
    total: int, first: int, cap: int
) -> None:
    cut = batches(total, first, cap)
    assert [i for r in cut for i in r] == list(range(total))
    assert all(len(r) <= cap for r in cut)
    if cut:
        assert len(cut[0]) == min(first, total)


def test_cancel_takes_a_maps_queued_item_jobs_out_of_its_queue(
    conn: redis.Redis, workers: Workers
) -> None:
    workers.start(pipeline("maps"), 1)
    dag = loader.load(pipeline("maps"))
    other = dag.submit(conn, n=1)  # another run's jobs in the same queues stay put
    run = dag.submit(conn, n=3000)
    expanded = lambda: conn.hget(runkeys.nodes_key(run.id), "parse:items_total")  # noqa: E731
    wait_for(expanded, 60, "parse expanded")
    status = run.cancel()
    assert status.state == "canceled"
    queued = [
        job_id
        for q in dag.plan.rq_queues
        for job_id in conn.lrange(keys.queue_key(q), 0, -1)
        if job_id.decode().startswith(keys.job_id(run.id, ""))
    ]
    assert queued == []
    assert other.wait(timeout=60).state == "succeeded"
    done = int(conn.hget(runkeys.nodes_key(run.id), "parse:items_done") or 0)
    assert done < 3000  # the rest never ran


def test_purge_keeps_other_runs_jobs_in_order(conn: redis.Redis) -> None:
    queue = keys.queue_key("q")
    mine, theirs = keys.job_id("r1", ""), keys.job_id("r11", "")
    ids = [f"{mine if i % 3 else theirs}n-c{i}" for i in range(2500)]
    conn.rpush(queue, *ids)
    assert scripts.purge(conn, "r1", ["q"]) == sum(1 for i in range(2500) if i % 3)
    assert [x.decode() for x in conn.lrange(queue, 0, -1)] == [
        x for x in ids if x.startswith(theirs)
    ]
    assert scripts.purge(conn, "r1", ["q"]) == 0


def test_a_resumed_map_runs_only_its_unfinished_items(conn: redis.Redis, workers: Workers) -> None:
    """Cancel a 1,000-item map about half done, then resume it: the items that had succeeded
    keep their results and do not run again; the others run; the result is whole."""
    address = pipeline("maps", "resumable")
    dag = loader.load(address)
    workers.start(address, 2)
    run = dag.submit(conn, n=1000)
    wait_for(lambda: (run.status().nodes["measure"].items or {}).get("done", 0) >= 450, 120, "half")
    canceled = run.cancel()
    items = canceled.nodes["measure"].items
    assert items is not None and items["running"] == 0 and items["queued"] == 0
    assert items["canceled"] == 1000 - items["done"]  # not done: canceled, not running
    kept, ran_before = items["done"], int(conn.get(f"test:measured:{run.id}") or 0)
    assert 0 < kept < 1000
    run.resume()
    final = run.wait(timeout=240)
    assert final.state == "succeeded"
    assert run.result("summed") == 2 * sum(range(1000))
    ran_after = int(conn.get(f"test:measured:{run.id}") or 0) - ran_before
    print(f"kept {kept} items at the cancel; the resume ran {ran_after} (of {1000 - kept} left)")
    assert ran_after == 1000 - kept  # every item not kept ran once, no kept item again
    from rq.registry import FailedJobRegistry

    failed = FailedJobRegistry(dag.plan.rq_queue(dag.specs["measure"].queue_name), connection=conn)
    assert [j for j in failed.get_job_ids() if run.id in j] == []  # stopped items forgotten
