"""Helpers shared by the tests: a fake run written as submit would leave it, one polling loop,
Redis command counting, and the counters test pipelines keep."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psutil
import redis

from dagrq.model.plan import NodeSpec
from dagrq.store import runkeys, scripts
from dagrq.workers.processes import Processes, worker_argv

#: the DAG version (plan hash) fake runs are pinned to
VERSION = "v-test"


def spec(name: str, parents: tuple[str, ...] = (), **fields: Any) -> NodeSpec:
    """A NodeSpec on queue ``q.test`` whose parents all pass data; a join when it has two or
    more; anything else by keyword."""
    defaults: dict[str, Any] = {
        "data_parents": parents,
        "queue_name": "q.test",
        "is_join": len(parents) > 1,
        "result_ttl": 600,
    }
    return NodeSpec(name=name, parents=parents, **{**defaults, **fields})


def fake_run(conn: redis.Redis, states: Mapping[str, str], **nodes_fields: Any) -> str:
    """Write a running run whose nodes are in ``states`` (the run hash counts them all as
    pending), plus any other node-hash fields; return its id."""
    run_id = uuid.uuid4().hex
    conn.hset(
        runkeys.run_key(run_id),
        mapping={"state": "running", "pending": len(states), "failed": 0, "plan": VERSION},
    )
    fields = {f"{node}:state": state for node, state in states.items()}
    conn.hset(runkeys.nodes_key(run_id), mapping={**fields, **nodes_fields})
    return run_id


def fake_join(
    conn: redis.Redis, width: int, rule: str = "all_success"
) -> tuple[str, list[NodeSpec], NodeSpec]:
    """A run with parents p0..p<width-1> running and one join node ``j`` waiting for them."""
    parents = tuple(f"p{i}" for i in range(width))
    run_id = fake_run(conn, {**dict.fromkeys(parents, "running"), "j": "pending"})
    return run_id, [spec(p, children=("j",)) for p in parents], spec("j", parents, rule=rule)


def arrive(
    conn: redis.Redis,
    run_id: str,
    parent: NodeSpec,
    child: NodeSpec,
    outcome: str,
    attempt: int = 0,
) -> scripts.Completed:
    """One arrival of ``parent`` at ``child`` (``complete.lua``), as a worker reports it."""
    report = scripts.Report(outcome, output=b"1", attempt=attempt)
    return scripts.complete(conn, run_id, parent, [child], report, ttl_s=600, version=VERSION)


def commands(conn: redis.Redis) -> int:
    """Redis commands run so far (INFO commandstats; scripts' inner calls included), not
    counting the INFO and CONFIG calls of the counting itself."""
    stats = conn.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))


def arrival_cost(conn: redis.Redis, width: int, which: str) -> int:
    """Redis commands of one arrival at a ``width``-way join: the ``last`` (firing) one or a
    ``waiting`` one."""
    run_id, parents, child = fake_join(conn, width)
    arrive(conn, run_id, parents[0], child, "succeeded")  # also loads the script
    if which == "last":
        for p in parents[1:-1]:
            arrive(conn, run_id, p, child, "succeeded")
    parent = parents[-1] if which == "last" else parents[1]
    conn.hset(runkeys.nodes_key(run_id), f"{parent.name}:attempts", 1)  # as start.lua leaves it
    before = commands(conn)
    done = arrive(conn, run_id, parent, child, "succeeded", attempt=1)  # as a worker reports
    assert done.fired == (("j",) if which == "last" else ())
    return commands(conn) - before


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that.

    Raises AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.05)


def failure_of(run: Any, timeout: float = 60.0) -> Any:
    """Wait for ``run`` and return the RunFailed it must end with (AssertionError if it
    succeeds instead)."""
    from dagrq import RunFailed

    try:
        run.wait(timeout=timeout)
    except RunFailed as failure:
        return failure
    raise AssertionError(f"run {run.id} succeeded; the test expected it to fail")


def counter(conn: redis.Redis, name: str, run_id: str) -> int:
    """The count a test pipeline keeps under ``test:<name>:<run>`` (see pipelines/_counting)."""
    return int(conn.get(f"test:{name}:{run_id}") or 0)


# ------------------------------------------------------------------ processes and pipelines
ROOT = Path(__file__).resolve().parents[1]
PIPELINES = Path(__file__).parent / "pipelines"


def pipeline(name: str, attr: str = "dag") -> str:
    """The address of a test pipeline file, as the CLI and workers take it."""
    return f"{PIPELINES / name}.py:{attr}"


def dagrq(
    *args: str, cwd: Path = ROOT, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in ("DAGRQ_URL", "REDIS_URL")}
    return subprocess.run(
        [sys.executable, "-m", "dagrq", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    return lines[0]


def run_keys(conn: redis.Redis) -> list[bytes]:
    """What a submit writes: dagrq's keys and RQ's jobs and queues (not the keys RQ's
    scheduler of another test's worker may still be writing)."""
    return sorted(k for p in ("dagrq:*", "rq:job:*", "rq:queue:*") for k in conn.scan_iter(p))


class Workers:
    """`dagrq worker` processes for one test, run in the test's own folder (so a scan for its
    processes, or their children, finds only this test's: :func:`processes_in`); all stopped
    (and their logs shown) at teardown, within a few seconds: a worker drains for at most
    :data:`DRAIN_S` unless the test asks for more."""

    #: seconds a test's worker lets running nodes finish after SIGTERM
    DRAIN_S = "2"

    def __init__(self, url: str, folder: Path) -> None:
        self.url = url
        self.folder = folder
        self.procs = Processes(
            folder,
            env={"DAGRQ_LOG": "WARNING", "DAGRQ_URL": url, "DAGRQ_CONCURRENCY": "1"},
            cwd=folder,
        )

    def start(self, address: str, n: int = 2, *extra: str) -> list[subprocess.Popen[bytes]]:
        """Start ``n`` workers for pipeline ``address`` (extra ``dagrq worker`` options after)."""
        drain = () if "--drain-timeout" in extra else ("--drain-timeout", self.DRAIN_S)
        return self.procs.start(worker_argv(absolute(address), *extra, *drain), n)

    def stop(self) -> None:
        """Stop every worker (warm, then hard)."""
        self.procs.stop()

    def logs(self) -> str:
        """Every worker's output."""
        return self.procs.logs()


def absolute(address: str) -> str:
    """A pipeline address whose file part is relative to the checkout, made absolute (test
    workers run in the test's own folder).

    Examples:
        >>> absolute("examples/etl.py:dag").endswith("/examples/etl.py:dag")
        True
    """
    path, sep, attr = address.rpartition(":")
    if sep and path.endswith(".py") and not Path(path).is_absolute():
        return f"{ROOT / path}:{attr}"
    return address


def processes_in(
    folder: Path, *, name: str | None = None, argv_end: Sequence[str] | None = None
) -> set[int]:
    """Live processes (no zombie) whose working directory is in ``folder``, called ``name``
    or whose command line ends with ``argv_end``: a test counts its own (its workers and
    embedded servers run there, and so do their children), whatever else runs on the
    machine."""
    found = set()
    root = str(folder.resolve()) + "/"
    for proc in psutil.process_iter(["name", "cmdline", "status", "cwd"]):
        info = proc.info
        argv = info["cmdline"] or []
        if info["status"] == psutil.STATUS_ZOMBIE or not (info["cwd"] or "").startswith(root[:-1]):
            continue
        if not ((info["cwd"] or "") + "/").startswith(root):
            continue
        if name is not None and name not in (info["name"] or ""):
            continue
        if argv_end is not None and argv[-len(argv_end) :] != list(argv_end):
            continue
        found.add(proc.pid)
    return found


def left_running(found: Callable[[], set[int]], before: set[int], wait_s: float = 5.0) -> set[int]:
    """Processes ``found()`` that were not there ``before`` and are still running after up to
    ``wait_s`` seconds (they may take a moment to go)."""
    deadline = time.monotonic() + wait_s
    while (extra := found() - before) and time.monotonic() < deadline:
        time.sleep(0.1)
    return extra


def tick_claims(conn: redis.Redis, schedule: str) -> dict[int, str]:
    """``{tick in ms: what claimed it}`` of a schedule (``<dag>:<name>``): a run id, or why
    the tick made none (``skipped: ...``, ``missed``), oldest first."""
    prefix = f"dagrq:sched:{schedule}:tick:"
    found = {int(k.decode()[len(prefix) :]): k for k in conn.scan_iter(prefix + "*")}
    return {t: (conn.get(k) or b"").decode() for t, k in sorted(found.items())}


def most_at_once(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment (an end before a start at the same instant)."""
    edges = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    now = top = 0
    for _, step in edges:
        now += step
        top = max(top, now)
    return top


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def ui_on(url: str, log_path: Path) -> Iterator[str]:
    """A running `dagrq ui` for ``url`` on a free loopback port; its base URL."""
    port = free_port()
    log = log_path.open("wb")
    env = {k: v for k, v in os.environ.items() if k not in ("DAGRQ_URL", "REDIS_URL")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dagrq", "ui", "--url", url, "--port", str(port)],
        env=env,
        stdout=log,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    try:
        while True:
            try:
                urllib.request.urlopen(base + "/api/runs", timeout=2).read()
                break
            except OSError:
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.2)
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)
            raise AssertionError("dagrq ui did not stop within 15 s of SIGTERM") from None


def launch_browser() -> Iterator[Any]:
    """Headless chromium (Debian's) through playwright, for a fixture; skip (fail in CI)
    without it."""
    import pytest

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        chromium = None
    if chromium is None:
        if os.environ.get("DAGRQ_REQUIRE_SERVERS"):
            pytest.fail("chromium and playwright are needed for the browser tests")
        pytest.skip(
            "no chromium or no playwright: apt-get install chromium (playwright comes with "
            "the test extra)"
        )
    with sync_playwright() as p:
        launched = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--headless"], headless=True
        )
        yield launched
        launched.close()


def join_fires(run: Any, joins: tuple[str, ...]) -> dict[str, int]:
    """How often each join was fired (queued by an arrival, not by a retry)."""
    fired = dict.fromkeys(joins, 0)
    for event in run.events(follow=False):
        if event["node"] in fired and event["state"] == "queued" and "error" not in event:
            fired[event["node"]] += 1
    return fired
