"""A concurrency limit under a kill storm: 200 runs while workers are SIGKILLed every 1-2 s (a
pool process, or a whole worker with everything under it; lease 5 s) never run more than 3
bodies of a ``concurrency=3`` node at once, every run ends, and no slot is left held."""

from __future__ import annotations

import random
import time
from pathlib import Path

from dagrq import Run, RunFailed, loader
from dagrq.store import keys

from ..helpers import most_at_once, pipeline
from .servers import RedisServer
from .storm import Slots


def _ended(run: Run) -> str:
    """The state a run ends in: a failed one (a node whose worker was killed mid-body, with no
    retries left) is one the test allows, not an error."""
    try:
        return run.wait(timeout=180).state
    except RunFailed:
        return run.status().state


def test_concurrency_3_holds_and_no_slot_leaks_while_workers_are_killed(
    server: RedisServer, tmp_path: Path
) -> None:
    conn = server.client()
    address = pipeline("flow", "limited")
    dag = loader.load(address)
    rng = random.Random(24)
    slots = Slots(server.url, ["pooled", "isolated", "pooled"], 5, tmp_path / "logs", address)
    killed: dict[int, float] = {}  # pid -> when
    try:
        runs = [dag.submit(conn, hold=0.15) for _ in range(200)]
        end = time.monotonic() + 20
        while time.monotonic() < end:
            time.sleep(rng.uniform(1.0, 2.0))
            slots.check()
            when = time.time()
            for pid in slots.kill(rng.randrange(3), rng, whole=rng.random() < 0.3):
                killed[pid] = when
        states = [_ended(run) for run in runs]
    finally:
        slots.stop()
    assert set(states) <= {"succeeded", "failed"} and states.count("succeeded") >= 190, states
    starts = [x.decode().split("|") for x in conn.lrange("test:flow:limited:start", 0, -1)]
    ends = {
        (r, who): float(t)
        for r, who, t in (
            x.decode().split("|") for x in conn.lrange("test:flow:limited:end", 0, -1)
        )
    }
    spans, cut = [], 0
    for run, who, began in starts:
        pid = int(who.rsplit(".", 1)[1])
        if (run, who) in ends:
            spans.append((float(began), ends[(run, who)]))
        else:  # its process was killed mid-body: it ran until the kill
            cut += 1
            spans.append((float(began), killed.get(pid, float("inf"))))
    print(f"{len(killed)} processes killed, {cut} bodies cut short, {len(spans)} bodies")
    assert cut >= 1  # the storm hit bodies, not only idle workers
    assert most_at_once(spans) <= 3
    limit = keys.node_limit_key("t_flow_limited.body")
    assert not conn.exists(limit + ":wait")
    assert int(conn.hget(limit, "used") or 0) == 0  # every slot given back
