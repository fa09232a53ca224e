"""Operating runs from the terminal (issue: list runs, read results and node logs, JSON,
one embedded server): real Redis, real `dagrq worker` processes, the real `dagrq` command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date
from functools import partial
from pathlib import Path

import pytest
import redis

from dagrq import Run
from dagrq.errors import NodeDefinitionError, RunFailed, UnknownNodeError

from .helpers import Workers, dagrq, left_running, pipeline, processes_in, wait_for


def test_runs_are_listed_newest_first_with_filters(conn: redis.Redis, redis_url: str) -> None:
    from tests.pipelines.operate import dag, wrong

    first = dag.submit(conn, run_name="nightly", run_tags=["prod", "eu"], day="2026-11-01")
    other = wrong.submit(conn)
    last = dag.submit(conn, day="2026-11-02")
    assert [r.id for r in Run.list(conn)] == [last.id, other.id, first.id]
    assert [r.id for r in Run.list(conn, dag="operate")] == [last.id, first.id]
    assert Run.list(conn, state="succeeded") == []
    listed = Run.list(conn, dag="operate")[1]
    assert (listed.name, listed.tags, listed.params) == (
        "nightly",
        ["prod", "eu"],
        {"day": "2026-11-01", "marker": ""},
    )
    assert (listed.done, listed.total, listed.state) == (0, 3, "running")

    out = dagrq("runs", "operate", "--json", "--url", redis_url)
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert [r["id"] for r in rows] == [last.id, first.id]
    assert rows[1]["created_at"].endswith("Z") and rows[1]["name"] == "nightly"
    text = dagrq("runs", "--url", redis_url, "--limit", "2")
    assert last.id in text.stdout and other.id in text.stdout and first.id not in text.stdout

    conn.delete(f"dagrq:run:{{{first.id}}}")  # expired: it leaves the index when listed
    assert [r.id for r in Run.list(conn, dag="operate")] == [last.id]
    assert conn.zscore("dagrq:runs:dag:operate", first.id) is None
    assert conn.zscore("dagrq:runs", f"operate:{first.id}") is None


def test_results_logs_and_tracebacks_from_the_cli(
    conn: redis.Redis, redis_url: str, workers: Workers, tmp_path: Path
) -> None:
    from tests.pipelines.operate import dag

    run = dag.submit(conn, day="2026-11-28", marker=str(tmp_path / "flag"))
    workers.start(pipeline("operate"), 1)
    run.wait(timeout=60)
    from rq.registry import FailedJobRegistry

    queue = dag.plan.rq_queue(dag.specs["tags"].queue_name)
    failed = FailedJobRegistry(queue, connection=conn).get_job_ids()
    assert [j for j in failed if run.id in j] == []  # its retried attempt did not end a node

    # typed results without the DAG: the plan recorded the standard return types
    fetched = Run.fetch(run.id, conn)
    assert fetched.result("when") == date(2026, 11, 28)
    assert fetched.result("tags") == {"a", "2026-11-28"}
    out = dagrq("result", run.id, "--url", redis_url)
    assert (out.returncode, out.stdout.strip()) == (0, "total: 2"), out.stderr
    out = dagrq("result", run.id, "when", "--json", "--url", redis_url)
    assert json.loads(out.stdout) == "2026-11-28"

    out = dagrq("logs", run.id, "tags", "--url", redis_url)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    headers = [ln for ln in lines if ln.startswith("── tags")]
    assert [h.split(" · ")[1] for h in headers] == ["attempt 1", "attempt 2"], out.stdout
    host_pid = headers[0].split(" · ")[2]
    assert host_pid.rsplit(":", 1)[1].isdigit()
    assert lines.count("hello from tags") == 2
    assert "! to stderr" in lines and "INFO operate.nodes: an info record" in lines
    assert not any("debug record" in ln for ln in lines)
    only = dagrq("logs", run.id, "tags", "--attempt", "2", "--json", "--url", redis_url)
    entries = [json.loads(ln) for ln in only.stdout.splitlines()]
    assert {e["attempt"] for e in entries} == {2}
    assert {e["stream"] for e in entries} == {"meta", "stdout", "stderr", "log"}
    everything = dagrq("logs", run.id, "--url", redis_url).stdout
    assert "parsing 2026-11-28" in everything  # every node's lines without NODE

    # the traceback of the failed first attempt, and where each attempt ran
    out = dagrq("status", run.id, "tags", "--url", redis_url)
    assert out.returncode == 0, out.stderr
    assert "attempts: 2" in out.stdout and "ran on: " in out.stdout
    status = json.loads(dagrq("status", run.id, "--json", "--url", redis_url).stdout)
    assert status["state"] == "succeeded" and status["created_at"].endswith("Z")
    assert status["nodes"]["tags"]["attempts"] == 2
    assert status["nodes"]["tags"]["worker"] == host_pid
    why = json.loads(dagrq("why", run.id, "total", "--json", "--url", redis_url).stdout)
    assert (why["decision"], why["parents"]) == ("fire", {"tags": "succeeded"})


def test_a_failed_nodes_traceback_is_shown(
    conn: redis.Redis, redis_url: str, workers: Workers
) -> None:
    from tests.pipelines.operate import wrong

    run = wrong.submit(conn)
    workers.start(pipeline("operate", "wrong"), 1)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    error = run.status().nodes["count"].error or ""
    assert "node 'count' returned str, not int (its return annotation)" in error
    out = dagrq("status", run.id, "count", "--url", redis_url)
    assert out.returncode == 1
    assert "traceback:" in out.stdout and "OutputTypeError" in out.stdout


def test_json_shapes_of_validate_and_plan() -> None:
    out = dagrq("validate", pipeline("operate"), "--json")
    shape = json.loads(out.stdout)
    assert (shape["dag"], shape["ok"], shape["nodes"]) == (
        "operate",
        True,
        ["when", "tags", "total"],
    )
    assert shape["params"] == {
        "day": {"required": True, "default": None},
        "marker": {"required": False, "default": ""},
    }
    plan = json.loads(dagrq("plan", pipeline("operate"), "--json").stdout)
    assert plan["critical_path"] == ["when", "tags", "total"] and plan["nodes"] == 3


def test_validation_suggests_a_node_for_a_typo_and_refuses_reserved_names() -> None:
    from tests.pipelines.operate import clash, declared, typo

    with pytest.raises(UnknownNodeError, match="did you mean 'totals'"):
        typo.validate()
    declared.validate()  # declared: a run parameter after all
    with pytest.raises(NodeDefinitionError, match=r"clashes with DAG\.submit"):
        clash.validate()
    out = dagrq("validate", pipeline("operate", "typo"))
    assert out.returncode == 2 and "did you mean 'totals'?" in out.stderr


def test_params_file_name_and_tags(conn: redis.Redis, redis_url: str, tmp_path: Path) -> None:
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"day": "2026-01-01", "marker": "x"}))
    out = dagrq(
        "submit",
        pipeline("operate"),
        "--params-file",
        str(params),
        "-p",
        "marker=",
        "--name",
        "backfill",
        "--tag",
        "a",
        "--tag",
        "b",
        "--url",
        redis_url,
    )
    assert out.returncode == 0, out.stderr
    (listed,) = Run.list(conn)
    assert (listed.id, listed.name, listed.tags) == (out.stdout.strip(), "backfill", ["a", "b"])
    assert listed.params == {"day": "2026-01-01", "marker": ""}
    params.write_text("[1, 2]")
    bad = dagrq("submit", pipeline("operate"), "--params-file", str(params), "--url", redis_url)
    assert bad.returncode == 2 and "not an object" in bad.stderr and "Traceback" not in bad.stderr


def test_dot_output_format_folder_and_run_checks(
    conn: redis.Redis, redis_url: str, tmp_path: Path
) -> None:
    bad = dagrq("dot", pipeline("operate"), "-o", str(tmp_path / "x.jpg"))
    assert bad.returncode == 2 and "unknown picture suffix '.jpg'" in bad.stderr
    bad = dagrq("dot", pipeline("operate"), "-o", str(tmp_path / "missing" / "x.dot"))
    assert bad.returncode == 2 and "does not exist" in bad.stderr and "Traceback" not in bad.stderr
    ok = dagrq("dot", pipeline("operate"), "-o", str(tmp_path / "x.mmd"))
    assert ok.returncode == 0 and (tmp_path / "x.mmd").read_text().startswith("flowchart")
    from tests.pipelines.operate import wrong

    other = wrong.submit(conn)
    bad = dagrq("dot", pipeline("operate"), "--run", other.id, "--url", redis_url)
    assert bad.returncode == 2 and "is a run of DAG 'wrongtype'" in bad.stderr


def test_run_timeout_cancels_unless_kept_and_w0_is_refused(
    redis_url: str, conn: redis.Redis, tmp_path: Path
) -> None:
    slow = ["run", pipeline("ticking"), "--url", redis_url, "-w", "1", "--timeout", "3", "-q"]
    out = dagrq(*slow)
    assert out.returncode == 4, out.stderr
    assert "canceled (--keep leaves it running)" in out.stderr
    (run,) = Run.list(conn)
    assert run.state == "canceled"
    kept = dagrq(*slow, "--keep")
    assert kept.returncode == 4 and "it goes on (--keep)" in kept.stderr
    assert Run.list(conn)[0].state == "running"
    none = dagrq("run", pipeline("operate"), "-p", "day=2026-11-28", "-w", "0", cwd=tmp_path)
    assert none.returncode == 2 and "nothing would run" in none.stderr


def test_a_new_user_on_the_embedded_server_leaves_no_server_behind(tmp_path: Path) -> None:
    """Submit with the embedded server, a worker in another terminal, list the run, read its
    result, logs and traceback: every command shares one server, and none is left."""
    servers = partial(processes_in, tmp_path, name="redis-server")
    before = servers()
    home = tmp_path
    address = pipeline("operate")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        result = dagrq(*args, cwd=home)
        assert left_running(servers, before) == set(), f"{args} left a server"
        return result

    submitted = cli("submit", address, "-p", "day=2026-11-28")
    assert submitted.returncode == 0, submitted.stderr
    run_id = submitted.stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("DAGRQ_URL", "REDIS_URL")}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [sys.executable, "-m", "dagrq", "worker", address, "-c", "1"],
        cwd=home,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log.open("wb"),
    )
    try:
        out = wait_for(
            lambda: (done := dagrq("status", run_id, cwd=home)).returncode != 3 and done,
            60,
            "the run ended",
        )
        assert out.returncode == 0, out.stdout + log.read_text()[-3000:]
        runs = dagrq("runs", cwd=home)
        assert run_id in runs.stdout and "succeeded" in runs.stdout
        assert dagrq("result", run_id, cwd=home).stdout.strip() == "total: 2"
        assert "hello from tags" in dagrq("logs", run_id, "tags", cwd=home).stdout
        assert "attempts: 1" in dagrq("status", run_id, "tags", cwd=home).stdout
        assert len(servers() - before) == 1  # one, shared
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert left_running(servers, before, 15) == set(), "the last user left a server running"
    assert (home / ".dagrq" / "redis.db").exists()  # its data was written when it stopped
    # every command that reads Redis, on its own: each starts the server and stops it
    for args in (
        ("runs",),
        ("result", run_id),
        ("logs", run_id),
        ("status", run_id),
        ("why", run_id, "total"),
        ("events", run_id, "--no-follow"),
        ("dot", address, "--run", run_id),
        ("retry", run_id),
        ("cancel", run_id),
        ("reconcile",),
        ("workers",),
    ):
        assert cli(*args).returncode == 0, args

    # a kept server outlives its clients until `dagrq server stop`
    assert dagrq("server", "status", cwd=home).returncode == 3
    started = dagrq("server", "start", cwd=home)
    assert started.returncode == 0 and "embedded Redis running" in started.stdout
    assert len(servers() - before) == 1
    assert run_id in dagrq("runs", cwd=home).stdout  # the data came back
    assert len(servers() - before) == 1
    assert dagrq("server", "status", cwd=home).returncode == 0
    assert dagrq("server", "stop", cwd=home).returncode == 0
    assert left_running(servers, before) == set()


def test_commands_starting_at_once_share_one_embedded_server(tmp_path: Path) -> None:
    servers = partial(processes_in, tmp_path, name="redis-server")
    before = servers()
    script = (
        "import time; from dagrq.embedded import Embedded; e = Embedded(); "
        "print(e.url, flush=True); time.sleep(1.5); e.close()"
    )
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script], cwd=tmp_path, stdout=subprocess.PIPE, text=True
        )
        for _ in range(4)
    ]
    urls = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(urls) == 1, urls
    assert left_running(servers, before) == set()
