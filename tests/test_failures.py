"""Failure semantics with real workers: trigger rules, skips, retries, timeouts, cancel,
and resume (DAG versions are tests/test_versions.py's). Every run in here ends."""

from __future__ import annotations

import time

import pytest
import redis

from dagrq import RunError, RunFailed, loader
from dagrq.store import runkeys

from .helpers import Workers, counter, dagrq, failure_of, pipeline, wait_for


def _local_states(dag: object) -> dict[str, str]:
    from dagrq.model.local import simulate

    local = simulate(dag.plan, dag.nodes, dag.codec, dag.validate_params({}))  # type: ignore[attr-defined]
    return local.states


def test_every_trigger_rule_fires_or_ends_as_airflow_says_and_failures_cascade(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline("rules"))
    workers.start(pipeline("rules"), 2)
    run = dag.submit(conn)
    failure = failure_of(run)
    assert failure.failed == {
        "bad": "RuntimeError: bad fails",
        "bad2": "RuntimeError: bad2 fails",
    }
    states = {n: s.state for n, s in run.status().nodes.items()}
    assert states == {
        "ok1": "succeeded",
        "ok2": "succeeded",
        "bad": "failed",
        "bad2": "failed",
        "skipper": "skipped",
        "done_any": "succeeded",
        "needs_all": "upstream_failed",
        "after_skip": "upstream_failed",
        "deep_skip": "upstream_failed",
        "cleanup": "succeeded",
        "first_ok": "succeeded",
        "none_ok": "upstream_failed",
        "alarm": "succeeded",
        "no_alarm": "skipped",
        "all_bad": "succeeded",
        "all_bad_skip": "skipped",
        "nf": "succeeded",
        "nf_bad": "upstream_failed",
        "two_of_three": "succeeded",
        "three_of_three": "upstream_failed",
        "nfmos": "succeeded",
        "nfmos_skip": "skipped",
        "one_done_ok": "succeeded",
        "one_done_skip": "skipped",
        "none_skipped_ok": "succeeded",
        "none_skipped_skip": "skipped",
        "all_skipped_ok": "succeeded",
        "all_skipped_skip": "skipped",
        "adm1": "succeeded",
        "adm1_uf": "upstream_failed",
        "always_node": "succeeded",
    }
    assert states == {n: s for n, s in _local_states(dag).items()}  # run_local agrees
    status = run.status()
    assert status.nodes["skipper"].reason == "nothing to do today"
    results = run.results()
    assert results["done_any"] == {"ok1": "ok1", "bad": None}  # a failed parent gives None
    assert results["cleanup"] == {"needs_all": None}  # so does an upstream_failed one
    assert results["all_bad"] == [None, None]
    assert results["nf"] == {"ok1": "ok1", "skipper": None}  # and a skipped one
    assert results["nfmos"] == {"ok1": "ok1", "skipper": None}
    assert results["always_node"] == [None, None]  # started at submit, before any parent
    assert results["alarm"] == "alarm after ok1" or results["alarm"] == "alarm after None"
    assert sorted(x for x in results["two_of_three"] if x) == ["ok1", "ok2"]
    assert not [k for k in conn.scan_iter(f"dagrq:run:{{{run.id}}}:join:*")]


def test_an_early_fire_reads_only_the_parents_it_fired_with(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline("early"))
    workers.start(pipeline("early"), 1, "--queue", "dagrq.t_early")
    run = dag.submit(conn)
    wait_for(lambda: run.status().nodes["slow"].state == "succeeded", what="slow succeeded")
    assert run.status().nodes["first"].state == "queued"
    workers.start(pipeline("early"), 1, "--queue", "t_early.late")
    run.wait(timeout=30)
    assert run.result("first") == {"fast": "fast", "slow": None}


def test_retries_deliver_only_the_final_outcome(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    dag = loader.load(pipeline("retries"))
    workers.start(pipeline("retries"), 2)
    run = dag.submit(conn)
    failure = failure_of(run)
    assert failure.failed == {"always_bad": "ValueError: attempt 2 failed"}
    status = run.status()
    assert status.nodes["flaky"].state == "succeeded" and status.nodes["flaky"].attempts == 3
    assert run.result("child") == 30  # it ran once, after the third attempt
    assert counter(conn, "child", run.id) == 1
    assert status.nodes["always_bad"].attempts == 2
    assert status.nodes["after_bad"].state == "upstream_failed"
    assert counter(conn, "after_bad", run.id) == 0
    # every failed attempt keeps its own error and traceback, also once the node succeeded
    flaky = status.nodes["flaky"].attempt_errors
    assert [(a["attempt"], a["error"]) for a in flaky] == [
        (1, "ConnectionError: attempt 1 failed"),
        (2, "ConnectionError: attempt 2 failed"),
    ]
    assert all("raise ConnectionError" in (a["traceback"] or "") for a in flaky)
    shown = dagrq("status", run.id, "flaky", "--url", redis_url).stdout
    assert "attempt 1 failed: ConnectionError: attempt 1 failed" in shown
    logs = dagrq("logs", run.id, "always_bad", "--url", redis_url).stdout
    assert "✗ attempt 1 failed: ValueError: attempt 1 failed" in logs
    assert "✗ attempt 2 failed: ValueError: attempt 2 failed" in logs


def test_a_node_over_its_timeout_fails_and_the_run_ends(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline("timeouts"))
    workers.start(pipeline("timeouts"), 1)
    started = time.monotonic()
    run = dag.submit(conn)
    failure = failure_of(run)
    assert time.monotonic() - started < 20
    assert failure.failed == {"sleepy": "timed out after 1 s"}
    assert run.status().nodes["after"].state == "upstream_failed"


def test_cancel_mid_run_stops_running_and_unqueues_queued_nodes(
    conn: redis.Redis, workers: Workers
) -> None:
    dag = loader.load(pipeline("cancel"))
    workers.start(pipeline("cancel"), 1)
    run = dag.submit(conn, pause_s=3)
    wait_for(lambda: counter(conn, "slow-started", run.id) == 1, what="slow started")
    status = run.status()
    assert status.nodes["slow"].state == "running" and status.nodes["twin"].state == "queued"
    after = run.cancel()
    assert after.state == "canceled"
    assert {n: s.state for n, s in after.nodes.items()} == {
        "first": "succeeded",
        "slow": "canceled",
        "twin": "canceled",
        "after": "canceled",
    }
    time.sleep(4)  # past the moment `slow` would have finished
    assert counter(conn, "slow-finished", run.id) == 0  # it was stopped
    assert counter(conn, "twin-ran", run.id) == 0  # it left its queue
    assert counter(conn, "after-ran", run.id) == 0  # it never started
    assert conn.llen("rq:queue:dagrq.t_cancel") == 0
    assert run.status().state == "canceled"
    with pytest.raises(RunFailed):
        run.wait(timeout=1)


def test_resume_reruns_failed_nodes_and_reuses_outputs(conn: redis.Redis, workers: Workers) -> None:
    dag = loader.load(pipeline("resume"))
    workers.start(pipeline("resume"), 2)
    run = dag.submit(conn)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    assert {n: s.state for n, s in run.status().nodes.items()} == {
        "expensive": "succeeded",
        "gate": "failed",
        "final": "upstream_failed",
        "other": "succeeded",
    }
    conn.set(f"test:open:{run.id}", 1, ex=600)
    resumed = run.resume()
    assert resumed.state == "running"
    final = run.wait(timeout=60)
    assert final.state == "succeeded"
    assert run.results() == {"expensive": 10, "gate": 11, "final": 110, "other": -10}
    counts = {n: counter(conn, n, run.id) for n in ("expensive", "gate", "final", "other")}
    assert counts == {"expensive": 1, "gate": 2, "final": 1, "other": 1}
    assert not [k for k in conn.scan_iter(f"dagrq:run:{{{run.id}}}:join:*")]


def test_resume_of_a_canceled_run_and_of_a_running_one(conn: redis.Redis, workers: Workers) -> None:
    dag = loader.load(pipeline("cancel"))
    run = dag.submit(conn, pause_s=0)
    with pytest.raises(RunError, match="still running"):
        run.resume()
    run.cancel()  # nothing ran yet: every node canceled
    workers.start(pipeline("cancel"), 2)
    run.retry()  # the first name of resume() still works
    assert run.wait(timeout=60).state == "succeeded"
    assert run.result("after") == 2


def test_a_resume_cut_short_is_finished_by_calling_retry_again(
    conn: redis.Redis, workers: Workers, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dagrq.store.runs import RunStore

    dag = loader.load(pipeline("resume"))
    workers.start(pipeline("resume"), 2)
    run = dag.submit(conn)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    conn.set(f"test:open:{run.id}", 1, ex=600)

    def crash(*args: object, **kwargs: object) -> None:
        raise ConnectionError("the resuming process died here")

    with monkeypatch.context() as patch:
        patch.setattr(RunStore, "deliver", crash)
        with pytest.raises(ConnectionError):
            run.resume()  # nodes reset, nothing delivered: gate waits for expensive forever
    time.sleep(0.5)  # nothing is to happen: gate must stay pending (no condition to wait on)
    assert run.status().nodes["gate"].state == "pending"
    assert run.resume().state == "running"  # finishes the resume instead of refusing
    final = run.wait(timeout=60)
    assert final.state == "succeeded"
    assert run.result("final") == 110
    assert conn.hget(runkeys.run_key(run.id), "resuming") is None
    assert counter(conn, "expensive", run.id) == 1


def test_clear_reruns_a_node_and_its_downstream_and_keeps_other_failures(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    """`clear` (Airflow's clear with downstream) re-runs one node and everything after it,
    whatever their outcome, and leaves the rest: a failed node outside it still fails the
    run. Refused while the run runs, and for a node the run does not have."""
    dag = loader.load(pipeline("resume"))
    workers.start(pipeline("resume"), 2)
    run = dag.submit(conn)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    # a node that succeeded, gate still failed: `other` may already have run again by the
    # time clear reads the status back (a free worker takes it at once)
    assert run.clear("other").state in ("running", "failed")
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    assert {n: counter(conn, n, run.id) for n in ("expensive", "gate", "other")} == {
        "expensive": 1,
        "gate": 1,
        "other": 2,
    }
    conn.set(f"test:open:{run.id}", 1, ex=600)
    out = dagrq("clear", run.id, "expensive", "--url", redis_url)
    assert out.returncode == 0 and "4 nodes to run again from expensive" in out.stdout
    assert run.wait(timeout=60).state == "succeeded"
    assert counter(conn, "expensive", run.id) == 2 and run.result("final") == 110
    with pytest.raises(RunError, match="has no node 'nope'"):
        run.clear("nope")
    out = dagrq("mark", run.id, "gate", "maybe", "--reason", "x", "--url", redis_url)
    assert out.returncode == 2 and "Traceback" not in out.stderr


def test_mark_sets_an_outcome_by_hand_and_runs_what_follows_with_it(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    """`mark`: a failed node marked succeeded (with an output) feeds its children that
    output; marked skipped, its children see a skip; marking a leaf ends the run at once.
    The reason is kept on the node and in the run's events."""
    dag = loader.load(pipeline("resume"))
    workers.start(pipeline("resume"), 2)
    run = dag.submit(conn)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    with pytest.raises(ValueError, match="say why"):
        run.mark("gate", "succeeded", " ")
    run.mark("gate", "succeeded", "checked by hand", output=3)
    assert run.wait(timeout=60).state == "succeeded"
    assert run.result("final") == 30 and counter(conn, "gate", run.id) == 1
    assert run.status().nodes["gate"].reason == "marked succeeded by hand: checked by hand"
    marked = [e for e in run.events(follow=False) if e.get("node") == "gate"]
    assert marked[-1]["reason"] == "marked succeeded by hand: checked by hand"

    again = dag.submit(conn)
    with pytest.raises(RunFailed):
        again.wait(timeout=60)
    out = dagrq("mark", again.id, "gate", "skipped", "--reason", "not today", "--url", redis_url)
    assert out.returncode == 0, out.stderr
    assert again.wait(timeout=60).state == "succeeded"  # final skipped: nothing failed
    assert again.status().nodes["final"].state == "skipped"
    with pytest.raises(ValueError, match="node 'final' returns int: give the output"):
        again.mark("final", "succeeded", "a leaf: the run ends at once")  # None is no int
    again.mark("final", "succeeded", "a leaf: the run ends at once", output=7)
    assert again.status().state == "succeeded" and again.result("final") == 7
