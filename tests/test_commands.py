"""Command and container nodes with real processes, a real Redis and real `dagrq worker`s;
container cases run where podman (or docker) can run the test image (CI builds it: .ci/run)."""

from __future__ import annotations

import os
import subprocess
from functools import partial
from pathlib import Path

import pytest
import redis

from dagrq import RunFailed
from dagrq.errors import CommandFailed
from dagrq.model.commands import container_runtime

from .helpers import ROOT, Workers, dagrq, left_running, pipeline, processes_in, wait_for


@pytest.fixture(scope="module")
def image() -> str:
    """The test image, if a container runtime can run it; else skip (fail in CI)."""
    from tests.pipelines.commands import IMAGE

    why = None
    try:
        runtime = container_runtime()
        done = subprocess.run(
            [runtime, "run", "--rm", "--pull", "never", IMAGE, "/bin/sh", "-c", "echo ok"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if done.stdout.strip() != "ok":
            why = f"{runtime} cannot run {IMAGE}: {done.stderr.strip()[-300:]}"
    except (CommandFailed, OSError, subprocess.TimeoutExpired) as exc:
        why = str(exc)
    if why is not None:
        if os.environ.get("DAGRQ_REQUIRE_SERVERS"):
            pytest.fail(f"no container runtime that runs the test image: {why}")
        pytest.skip(
            f"no container runtime that runs the test image ({why}); on Debian: apt-get "
            "install podman runc busybox-static, then `source .ci/containers.sh` (it sets "
            "CONTAINERS_CONF and imports the image) in the shell that runs pytest"
        )
    return IMAGE


def test_local_command_nodes_joined_by_a_python_node(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    from tests.pipelines.commands import dag

    run = dag.submit(conn, text="a bb ccc")
    workers.start(pipeline("commands"), 1)
    run.wait(timeout=60)
    stdin = '{"split":["a","bb","ccc"]}'
    assert run.result("total") == {
        "count": len(stdin),
        "words": ["a", "bb", "ccc"],
        "lens": [1, 2, 3],
    }
    logs = dagrq("logs", run.id, "echo_file", "--url", redis_url).stdout
    assert "! from echo_file" in logs  # stderr into the node's log
    why = dagrq("why", run.id, "count_box", "--url", redis_url).stdout
    assert 'runs: /bin/sh -c "cat | wc -c"' in why
    plan = dagrq("plan", pipeline("commands")).stdout
    assert "command nodes (3):" in plan


def test_non_zero_exit_bad_output_and_retry(conn: redis.Redis, workers: Workers) -> None:
    from tests.pipelines import commands

    fail, bad, retried = (
        commands.failing.submit(conn),
        commands.badout.submit(conn),
        commands.flaky.submit(conn),
    )
    for attr in ("failing", "badout", "flaky"):
        workers.start(pipeline("commands", attr), 1)
    with pytest.raises(RunFailed):
        fail.wait(timeout=60)
    error = fail.status().nodes["boom"].error or ""
    assert "exit code 3" in error and "stderr: one | two" in error
    with pytest.raises(RunFailed):
        bad.wait(timeout=60)
    assert "its output is not int" in (bad.status().nodes["words"].error or "")
    retried.wait(timeout=60)
    assert retried.result("once") == 7
    assert retried.status().nodes["once"].attempts == 2


def test_a_timeout_kills_the_whole_process_group(conn: redis.Redis, workers: Workers) -> None:
    from tests.pipelines.commands import slow

    sleepers = partial(processes_in, workers.folder, argv_end=["sleep", "300"])
    before = sleepers()
    run = slow.submit(conn)
    workers.start(pipeline("commands", "slow"), 1)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    assert "timed out after 2 s" in (run.status().nodes["sleepy"].error or "")
    assert left_running(sleepers, before) == set()  # both sleeps: the one in the background too


def test_cancel_stops_a_running_command(conn: redis.Redis, workers: Workers) -> None:
    from tests.pipelines.commands import canceled

    sleepers = partial(processes_in, workers.folder, argv_end=["sleep", "300"])
    before = sleepers()
    run = canceled.submit(conn)
    workers.start(pipeline("commands", "canceled"), 1)
    wait_for(lambda: sleepers() - before, 30, "the command started")
    assert run.cancel().state == "canceled"
    assert left_running(sleepers, before) == set()


def test_a_map_of_commands_over_100_items(conn: redis.Redis, workers: Workers) -> None:
    from tests.pipelines.commands import many

    run = many.submit(conn, n=100)
    workers.start(pipeline("commands", "many"), 2)
    run.wait(timeout=120)
    assert run.result("add") == 2 * sum(range(100))
    items = run.status().nodes["double"].items or {}
    assert (items["total"], items["done"], items["failed"]) == (100, 100, 0)
    from dagrq.store.nodelogs import read

    printed = {e.item: e.line for e in read(conn, run.id, ["double"]) if e.stream == "stdout"}
    assert printed == {i: str(2 * i) for i in range(100)}  # each line names its item


def test_container_nodes_joined_by_a_python_node(
    conn: redis.Redis, workers: Workers, image: str
) -> None:
    from tests.pipelines.commands import boxed

    runtime = container_runtime()
    run = boxed.submit(conn, text="a bb ccc")
    workers.start(pipeline("commands", "boxed"), 2)
    with pytest.raises(RunFailed):  # box_slow times out; the join runs anyway (all_done)
        run.wait(timeout=120)
    stdin = '{"words":["a","bb","ccc"]}'
    assert run.result("joined") == {"count": len(stdin), "words": ["a", "bb", "ccc"], "slow": None}
    assert "timed out after 3 s" in (run.status().nodes["box_slow"].error or "")
    left = subprocess.run([runtime, "ps", "-aq"], capture_output=True, text=True).stdout
    assert left.strip() == ""  # every container removed, the killed one too


def test_the_polyglot_example_runs(image: str, tmp_path: Path) -> None:
    out = dagrq("run", str(ROOT / "examples" / "polyglot.py") + ":dag", "-q", cwd=tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "report:" in out.stdout
