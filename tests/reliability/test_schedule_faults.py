"""Schedules through faults, on Debian's redis-server (AOF on every write): a `*/2 s` schedule
served by 3 workers for 60 s, its leader SIGKILLed twice and Redis restarted once in the
middle, makes exactly one run per tick, none missing, none doubled."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter

from dagrq import loader
from dagrq.client import Run
from dagrq.store import schedules as stored

from ..helpers import absolute, pipeline, tick_claims, wait_for
from .servers import Fleet, RedisServer


def test_one_run_per_tick_through_two_leader_kills_and_a_redis_restart(
    server: RedisServer, fleet: Fleet
) -> None:
    address = absolute(pipeline("scheduled", "every2s"))
    conn = server.client()
    procs = fleet.start(address, 3)
    began, done = time.monotonic(), []
    faults = [(15, "kill"), (30, "restart"), (45, "kill")]
    while time.monotonic() - began < 60:
        if faults and time.monotonic() - began > faults[0][0]:
            _, fault = faults.pop(0)
            if fault == "restart":
                server.shutdown()
                time.sleep(2)  # the outage
                server.start()
            else:
                token = wait_for(lambda: stored.leader(conn, "t_every2s"), 15, "a leader")
                pid = int(token.split(":")[1])
                assert pid in [p.pid for p in procs] and pid not in done
                os.kill(pid, signal.SIGKILL)
            done.append(pid if fault == "kill" else fault)
        time.sleep(0.2)
    claims = tick_claims(conn, "t_every2s:fast")
    ticks = sorted(claims)
    assert len(ticks) >= 25, claims
    assert all(b - a == 2000 for a, b in itertools.pairwise(ticks)), ticks  # none missing
    assert all(len(v) == 32 for v in claims.values()), claims  # each made a run
    runs = Run.list(conn, dag="t_every2s", limit=1000)
    assert sorted(r.id for r in runs) == sorted(claims.values())  # no second run of a tick
    assert max(Counter(r.params["logical_time"] for r in runs).values()) == 1
    dag = loader.load(address)
    wait_for(lambda: all(Run(r, conn, dag).status().done for r in claims.values()), 60, "ended")
    assert {Run(r, conn, dag).status().state for r in claims.values()} == {"succeeded"}
