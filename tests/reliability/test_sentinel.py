"""An HA Redis (Debian's redis-server and redis-sentinel: one primary, two replicas, three
sentinels on loopback) fails over mid-run: the workers follow the new primary through a
``redis+sentinel://`` URL, every run ends with the right result, and each join is fired once
(``DAGRQ_WAIT_REPLICAS=1``: no acknowledged step is lost with the old primary)."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dagrq import loader
from dagrq.connection import connect
from dagrq.store import runkeys

from ..helpers import join_fires, wait_for
from .servers import Fleet, SentinelSet
from .storm import PIPELINE as STORM


@pytest.fixture
def ha(tmp_path: Path) -> Iterator[SentinelSet]:
    cluster = SentinelSet(tmp_path / "ha")
    try:
        yield cluster
    finally:
        cluster.stop()


def test_a_failover_mid_run_ends_every_run_and_fires_each_join_once(
    ha: SentinelSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAGRQ_WAIT_REPLICAS", "1")
    conn = connect(ha.url)
    dag = loader.load(STORM)
    fleet = Fleet(ha.url, tmp_path / "logs")
    fleet.procs.env["DAGRQ_WAIT_REPLICAS"] = "1"
    try:
        procs = fleet.start(STORM, 2, "--lease", "5")
        procs += fleet.start(STORM, 1, "--isolate", "--lease", "5")
        runs = [dag.submit(conn, seed=i) for i in range(20)]
        wait_for(lambda: sum(r.status().counts()["succeeded"] for r in runs) > 10, 30, "mid-run")
        old = ha.primary_port()
        ha.primary.kill()  # the primary's machine dies
        wait_for(lambda: ha.primary_port() != old, 30, "a replica promoted")
        took = time.monotonic()
        runs += [dag.submit(conn, seed=100 + i) for i in range(5)]  # on the new primary
        wait_for(
            lambda: all(conn.hget(runkeys.run_key(r.id), "state") != b"running" for r in runs),
            150,
            "every run ended",
        )
        print(f"all runs ended {time.monotonic() - took:.1f} s after the promotion")
        for run in runs:
            final = run.status()
            assert final.state == "succeeded", (run.id, final.failed())
            assert run.results() == dag.run_local(**final.params)
            assert join_fires(run, ("j1", "j2", "total")) == {"j1": 1, "j2": 1, "total": 1}
        assert [p.poll() for p in procs] == [None, None, None]
    finally:
        fleet.procs.stop()


def test_a_command_in_flight_when_the_primary_dies_ends_on_the_promoted_replica(
    ha: SentinelSet,
) -> None:
    """A command whose connection drops under it is retried on the replica the sentinels
    promote (redis-py's own reconnect goes back to the dead address until its retries run
    out, about 35 s later, which failed the nodes of that worker)."""
    conn = connect(ha.url)
    conn.set("test:before", "kept")
    assert conn.wait(2, 5000) == 2
    outcome: list[object] = []

    def blocked() -> None:  # WAIT for more replicas than exist: blocks its 3 s on the server
        try:
            outcome.append(conn.wait(5, 3000))
        except redis.RedisError as exc:
            outcome.append(exc)

    old = ha.primary_port()
    waiting = threading.Thread(target=blocked)
    waiting.start()
    primary = redis.Redis(port=ha.primary_port())
    wait_for(lambda: any(c.get("cmd") == "wait" for c in primary.client_list()), 10, "WAIT")
    ha.primary.kill()
    wait_for(lambda: ha.primary_port() != old, 30, "a replica promoted")
    waiting.join(60)
    assert outcome and isinstance(outcome[0], int), outcome
    assert conn.get("test:before") == b"kept"
    assert conn.connection_pool.get_master_address() == ("127.0.0.1", ha.primary_port())
