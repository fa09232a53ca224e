"""An outage is never a node's failure: runs whose nodes are running when Redis restarts, dies
or stalls all succeed, every body once (no `retry=` to spend); `dagrq run` waits Redis out;
pool processes take jobs again at once after a restart."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import redis

from dagrq import Run, loader

from ..helpers import pipeline, wait_for
from .servers import Fleet, RedisServer

ADDRESS = pipeline("outage")


def _mid_run(conn: redis.Redis, runs: list[Run]) -> None:
    """Wait until some nodes are running and some have ended."""

    def moving() -> bool:
        states = [n.state for r in runs for n in r.status().nodes.values()]
        return "running" in states and states.count("succeeded") >= 4

    wait_for(moving, 60, "nodes running mid-run")


def _all_succeed_once(conn: redis.Redis, runs: list[Run], fleet: Fleet) -> None:
    for run in runs:
        final = run.wait(timeout=180)
        assert final.state == "succeeded", (final.failed(), fleet.logs()[-4000:])
        assert run.result("d") == (final.params["seed"] + 1) + final.params["seed"] * 2
        assert conn.scard(f"test:ran:d:{run.id}") == 1  # the join body ran once


def _outage_rounds(
    server: RedisServer, fleet: Fleet, rounds: int, outage: Callable[[], None]
) -> None:
    dag = loader.load(ADDRESS)
    fleet.start(ADDRESS, 2, "-c", "2")
    conn = server.client()
    for i in range(rounds):
        runs = [dag.submit(conn, seed=100 * i + n) for n in range(20)]
        _mid_run(conn, runs)
        outage()
        _all_succeed_once(conn, runs, fleet)


def test_redis_restarts_mid_run_fail_no_node(server: RedisServer, fleet: Fleet) -> None:
    """SHUTDOWN (AOF always), down 2 s, back: 5 times over 20 runs each, 100 of 100 runs
    succeed and every join body runs once."""

    def restart() -> None:
        server.shutdown()
        time.sleep(2)  # the outage
        server.start()

    _outage_rounds(server, fleet, 5, restart)


def test_redis_killed_mid_run_fails_no_node(server: RedisServer, fleet: Fleet) -> None:
    def kill() -> None:
        server.kill()  # AOF always: every acknowledged write is on disk
        time.sleep(2)
        server.start()

    _outage_rounds(server, fleet, 2, kill)


def test_redis_stalled_20_s_mid_run_fails_no_node(server: RedisServer, fleet: Fleet) -> None:
    def stall() -> None:
        server.pause()
        time.sleep(20)  # SIGSTOP: every connection hangs
        server.resume()

    _outage_rounds(server, fleet, 1, stall)


def test_pool_processes_take_jobs_again_within_5_s_after_a_restart(
    server: RedisServer, fleet: Fleet
) -> None:
    """A restarted process must not be refused by RQ as its own stale registration."""
    fleet.start(ADDRESS, 1, "-c", "3")
    conn = server.client()
    names = wait_for(lambda: len(conn.smembers("rq:workers")) == 3, 30, "3 processes up")
    assert names
    server.shutdown()
    time.sleep(1)
    server.start()
    back = time.monotonic()
    wait_for(lambda: len(conn.smembers("rq:workers")) == 3, 20, "3 processes registered")
    took = time.monotonic() - back
    assert took < 5, f"processes took jobs again {took:.1f} s after the restart"
    dag = loader.load(ADDRESS)
    runs = [dag.submit(conn, seed=n) for n in range(6)]
    for run in runs:
        assert run.wait(timeout=60).state == "succeeded"
    assert "There exists an active worker" not in fleet.logs()


def _dagrq_run(url: str, cwd: Path, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dagrq", "run", pipeline("outage", "slow"), "--url", url, *extra],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_dagrq_run_waits_out_redis_killed_for_10_s(server: RedisServer, tmp_path: Path) -> None:
    conn = server.client()
    proc = _dagrq_run(server.url, tmp_path, "-p", "seconds=6", "-w", "1")
    wait_for(lambda: _running(conn), 60, "sleeper running")
    server.kill()
    time.sleep(10)
    server.start()
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 0, err[-3000:]
    assert "end: 20" in out
    assert "Redis unreachable, retrying" in out + err


def test_dagrq_run_gives_up_after_its_redis_wait_with_the_resume_hint(
    server: RedisServer, tmp_path: Path
) -> None:
    conn = server.client()
    proc = _dagrq_run(server.url, tmp_path, "-p", "seconds=30", "-w", "1", "--redis-wait", "5")
    wait_for(lambda: _running(conn), 60, "sleeper running")
    server.kill()
    started = time.monotonic()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 1, err
    assert time.monotonic() - started < 60
    line = err.strip().splitlines()[-1]
    assert "Redis unreachable for" in line and "dagrq retry" in line and "Traceback" not in err


def _running(conn: redis.Redis) -> bool:
    try:
        return any(
            v == b"running" for k, v in _node_states(conn).items() if k.endswith(b"sleeper:state")
        )
    except redis.RedisError:
        return False


def _node_states(conn: redis.Redis) -> dict[bytes, bytes]:
    out: dict[bytes, bytes] = {}
    for key in conn.scan_iter("dagrq:run:*:nodes"):
        out.update(conn.hgetall(key))
    return out
