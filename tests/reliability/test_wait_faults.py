"""Waits survive what a worker's life and Redis's restarts throw at them: an approval waits
through a restart of its workers and of Redis (AOF), then a `dagrq signal` ends it; a durable
timer due during the outage fires once (docs/waits.md)."""

from __future__ import annotations

import time

from dagrq import loader
from dagrq.store import keys

from ..helpers import dagrq, pipeline, wait_for
from .servers import Fleet, RedisServer

APPROVAL, NAPPING = pipeline("waiting", "approval"), pipeline("waiting", "napping")


def test_an_approval_and_a_timer_survive_worker_and_redis_restarts(
    server: RedisServer, fleet: Fleet
) -> None:
    conn = server.client()
    fleet.start(APPROVAL, 1, NAPPING)
    approval, napping = loader.load(APPROVAL).submit(conn), loader.load(NAPPING).submit(conn)
    wait_for(lambda: approval.status().nodes["approve"].state == "waiting", 30, "approval waits")
    wait_for(lambda: napping.status().nodes["nap"].state == "waiting", 30, "nap parked")
    fleet.procs.stop(grace_s=10)  # no worker at all while the timer falls due
    server.shutdown()
    time.sleep(2.5)
    server.start()
    conn = server.client()
    assert approval.status().nodes["approve"].state == "waiting"
    fleet.start(APPROVAL, 1, NAPPING)
    assert napping.wait(timeout=60).state == "succeeded"
    assert napping.status().nodes["woke"].attempts == 1  # the timer fired once
    assert napping.result("woke") >= 2.0
    bad = dagrq("signal", approval.id, "approve", "--value", '{"approved": 1.5}', "--url",
                server.url)  # fmt: skip
    assert bad.returncode == 2 and "approved: Input should be a valid boolean" in bad.stderr
    assert approval.status().nodes["approve"].state == "waiting"
    good = dagrq("signal", approval.id, "approve", "--value", '{"approved": true, "by": "ops"}',
                 "--url", server.url)  # fmt: skip
    assert good.returncode == 0 and "accepted" in good.stdout, good.stderr
    assert approval.wait(timeout=60).state == "succeeded"
    assert approval.result("payout") == "42 paid, approved by ops"
    assert conn.zcard(keys.TIMERS_KEY) == 0
