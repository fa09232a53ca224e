"""The `dagrq` command as a user runs it: real processes, exit codes, one-line errors."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from functools import partial
from pathlib import Path

import psutil
import redis

from .helpers import (
    ROOT,
    dagrq,
    left_running,
    one_line_error,
    pipeline,
    processes_in,
    run_keys,
    wait_for,
)


def test_validate_prints_a_summary() -> None:
    result = dagrq("validate", "examples/etl.py:dag")
    assert result.returncode == 0, result.stderr
    assert "DAG etl: OK" in result.stdout
    assert (
        "joins  4: customer_ltv (2 in), enriched (3 in), top_products (2 in), report (3 in)"
        in result.stdout
    )


def test_validate_a_cyclic_dag_exits_2_and_prints_the_cycle() -> None:
    result = dagrq("validate", pipeline("cyclic"))
    assert result.returncode == 2
    line = one_line_error(result)
    assert "cycle: " in line
    ring = line.split("cycle: ")[1].split(";")[0].split(" -> ")
    assert ring[0] == ring[-1] and sorted(ring[:-1]) == ["extract", "load", "transform"]


def test_a_bad_parameter_exits_2_naming_it_and_its_type_and_writes_nothing(
    conn: redis.Redis, redis_url: str
) -> None:
    before = run_keys(conn)
    result = dagrq("run", pipeline("diamond"), "-p", "x=abc", "--url", redis_url)
    assert result.returncode == 2
    line = one_line_error(result)
    assert "'x'" in line and "node a" in line and "expects int" in line
    missing = dagrq("submit", pipeline("diamond"), "--url", redis_url)
    assert missing.returncode == 2
    assert "'x' (node a) is required, of type int" in one_line_error(missing)
    malformed = dagrq("run", pipeline("diamond"), "-p", "x", "--url", redis_url)
    assert malformed.returncode == 2 and "KEY=VALUE" in malformed.stderr
    assert run_keys(conn) == before


def test_a_missing_pipeline_exits_2_with_one_line() -> None:
    result = dagrq("run", "examples/nope.py:dag", "--url", "redis://127.0.0.1:1")
    assert result.returncode == 2
    assert "no file" in one_line_error(result)
    result = dagrq("validate", "examples/etl.py:nothing")
    assert result.returncode == 2
    assert "has no attribute 'nothing'" in one_line_error(result)


def test_run_prints_the_sink_results_and_exits_0(conn: redis.Redis, redis_url: str) -> None:
    result = dagrq(
        "run", "examples/aggregator.py:dag", "-p", "text=a b a c a b", "--url", redis_url
    )
    assert result.returncode == 0, result.stderr + result.stdout
    line = next(ln for ln in result.stdout.splitlines() if ln.startswith("aggregator: "))
    assert json.loads(line.split(": ", 1)[1]) == {"a": 3, "b": 2, "c": 1}


def test_run_with_a_failing_node_exits_1_fast_and_prints_the_error(redis_url: str) -> None:
    started = time.monotonic()
    result = dagrq("run", pipeline("failing"), "--url", redis_url)
    assert result.returncode == 1
    assert "node boom failed: ValueError: bad input 1" in result.stderr
    assert time.monotonic() - started < 30


def test_submit_then_a_burst_worker_elsewhere(conn: redis.Redis, redis_url: str) -> None:
    sub = dagrq("submit", pipeline("diamond"), "-p", "x=3", "--url", redis_url)
    assert sub.returncode == 0, sub.stderr
    run_id = sub.stdout.strip()
    assert conn.hget(f"dagrq:run:{{{run_id}}}", "state") == b"running"
    work = dagrq("worker", pipeline("diamond"), "--url", redis_url, "--burst")
    assert work.returncode == 0, work.stderr
    assert conn.hget(f"dagrq:run:{{{run_id}}}", "state") == b"succeeded"


def _cwd(process: psutil.Process) -> str | None:
    try:
        return str(process.cwd())
    except psutil.Error:
        return None


def test_run_on_the_embedded_default_needs_no_redis_and_stops_it(tmp_path: Path) -> None:
    example = ROOT / "examples" / "aggregator.py"
    result = dagrq("run", str(example), "-p", "text=x y x", cwd=tmp_path)
    assert result.returncode == 0, result.stderr + result.stdout
    assert 'aggregator: {"x": 2, "y": 1}' in result.stdout
    state = tmp_path / ".dagrq"
    assert (state / "redis.db").exists()  # its data is saved in the state dir
    assert not (state / "redis.db.settings").exists()  # no server recorded as running
    alive = [  # a server runs in its data folder: none is left in this one
        p.pid
        for p in psutil.process_iter(["name", "status"])
        if "redis" in (p.info["name"] or "")
        and p.info["status"] != psutil.STATUS_ZOMBIE
        and _cwd(p) == str(state.resolve())
    ]
    assert alive == []  # the server it started is gone


def test_status_why_cancel_and_retry_commands(conn: redis.Redis, redis_url: str) -> None:
    failed = dagrq("submit", pipeline("failing"), "--url", redis_url).stdout.strip()
    worker = dagrq("worker", pipeline("failing"), "--url", redis_url, "--burst")
    assert worker.returncode == 0, worker.stderr
    status = dagrq("status", failed, "--url", redis_url)
    assert status.returncode == 1  # the run failed
    assert "ValueError: bad input 1" in status.stdout
    rows = {ln.split()[1]: ln for ln in status.stdout.splitlines() if ln.startswith("│ ")}
    assert "upstream_failed" in rows["after_boom"] and "succeeded" in rows["fine"]
    why = dagrq("why", failed, "after_boom", "--url", redis_url)
    assert why.returncode == 0, why.stderr
    assert "rule all_success over 1 parents" in why.stdout
    assert "boom  failed" in why.stdout and "because an upstream failed" in why.stdout
    assert "because boom failed: ValueError: bad input 1" in why.stdout

    waiting = dagrq("submit", pipeline("diamond"), "-p", "x=1", "--url", redis_url).stdout.strip()
    status = dagrq("status", waiting, "--url", redis_url)
    assert status.returncode == 3  # still running
    assert "waits for b, c" in status.stdout
    assert "waits for: a" in dagrq("why", waiting, "b", "--url", redis_url).stdout
    canceled = dagrq("cancel", waiting, "--url", redis_url)
    assert canceled.returncode == 0 and "canceled" in canceled.stdout
    assert dagrq("status", waiting, "--url", redis_url).returncode == 1
    again = dagrq("retry", waiting, "--url", redis_url)
    assert again.returncode == 0 and "4 nodes to run again" in again.stdout
    assert dagrq("worker", pipeline("diamond"), "--url", redis_url, "--burst").returncode == 0
    assert dagrq("status", waiting, "--url", redis_url).returncode == 0

    unknown = dagrq("status", "nope", "--url", redis_url)
    assert unknown.returncode == 2 and "not found" in one_line_error(unknown)


def test_an_interrupted_run_is_canceled_and_its_workers_stopped(
    conn: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dagrq",
            "run",
            pipeline("cancel"),
            "-p",
            "pause_s=20",
            "--url",
            redis_url,
        ],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    started = wait_for(lambda: list(conn.scan_iter("test:slow-started:*")), 30, "slow started")
    assert proc.poll() is None
    run_id = started[0].decode().rsplit(":", 1)[1]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert f"interrupted: run {run_id} canceled" in err
    assert conn.hget(f"dagrq:run:{{{run_id}}}", "state") == b"canceled"
    assert not conn.exists(f"test:slow-finished:{run_id}")  # the running node was stopped
    assert left_running(partial(processes_in, tmp_path), set()) == set()  # its workers ended


def test_worker_refuses_two_pipelines_with_one_dag_name_and_an_unknown_queue() -> None:
    twice = dagrq("worker", pipeline("changed_v1"), pipeline("changed_v2"), "--url", "redis://x")
    assert twice.returncode == 2
    line = one_line_error(twice)
    assert "changed_v2.py:dag and " in line and "both define a DAG named" in line
    queue = dagrq("worker", pipeline("diamond"), "--queue", "nope", "--url", "redis://x")
    assert queue.returncode == 2
    assert "--queue 'nope' is not a queue of DAG 't_diamond'" in one_line_error(queue)
