"""Waiting nodes under real workers (tests/test_waits.py): an approval, a sleep, a sensor that
is true on its 4th poke, a sub-DAG mapped over regions, and DAGs started by events. Bodies
record what they saw in Redis under ``test:waits:*``."""

from __future__ import annotations

import os
import time
from datetime import timedelta

from pydantic import BaseModel
from rq import get_current_job

from dagrq import DAG, on_event


def _conn_run() -> tuple[object, str]:
    job = get_current_job()
    assert job is not None
    return job.connection, job.kwargs["run"]


class Approval(BaseModel):
    approved: bool
    by: str


# ------------------------------------------------------------------ an approval
approval = DAG("t_wait_approval")


@approval.node
def report(hold: float = 0.0) -> int:
    time.sleep(hold)
    return 42


approval.wait("approve", type=Approval, after=["report"])


@approval.node
def payout(report: int, approve: Approval) -> str:
    return f"{report} paid, approved by {approve.by}" if approve.approved else "rejected"


expiring = DAG("t_wait_expiring")
expiring.wait("ok", type=bool, timeout=timedelta(seconds=2), on_timeout="fail")
expiring.wait("maybe", type=int, timeout=timedelta(seconds=2), on_timeout=7)


@expiring.node(trigger="all_done")
def after(ok: bool | None, maybe: int | None) -> str:
    return f"ok={ok} maybe={maybe}"


# ------------------------------------------------------------------ a sleep
napping = DAG("t_wait_napping")


@napping.node
def begin() -> float:
    return time.time()


napping.sleep("nap", after=["begin"], duration=timedelta(seconds=2))


@napping.node(after=["nap"])
def woke(begin: float) -> float:
    return time.time() - begin


# ------------------------------------------------------------------ a sensor
sensing = DAG("t_wait_sensing")


@sensing.sensor(every=timedelta(seconds=1), timeout=timedelta(seconds=60))
def landed() -> str | None:
    conn, run = _conn_run()
    n = conn.incr(f"test:waits:pokes:{run}")  # type: ignore[attr-defined]
    conn.rpush(f"test:waits:poked:{run}", f"{os.getpid()}|{time.time()!r}")  # type: ignore[attr-defined]
    print(f"poke {n}: looking for the file")
    return "file.csv" if n >= 4 else None


quick = DAG("t_wait_quick")


@quick.node
def blink() -> str:
    conn, run = _conn_run()
    conn.rpush("test:waits:blinks", f"{os.getpid()}|{time.time()!r}")  # type: ignore[attr-defined]
    return run


# ------------------------------------------------------------------ sub-DAGs
region = DAG("t_wait_region")


@region.node
def load(region: str, hold: float = 0.0) -> int:
    if region == "bad":
        raise ValueError("region bad has no data")
    time.sleep(hold)
    return len(region)


@region.node
def doubled(load: int) -> int:
    return load * 2


fleet = DAG("t_wait_fleet")


@fleet.node
def regions(n: int = 20, bad: bool = False) -> list[str]:
    names = [f"r{i:02d}" for i in range(n)]
    return [*names, "bad"] if bad else names


fleet.subdag(
    "per_region",
    region,
    map_over="regions",
    params=lambda regions, hold=0.0: {"region": regions, "hold": hold},
    max_children=5,
)


@fleet.node
def total(per_region: list[int], hold: float = 0.0) -> int:
    return sum(per_region)


# ------------------------------------------------------------------ events
orders = DAG(
    "t_wait_orders",
    triggers=[on_event("orders.uploaded", params=lambda e: {"day": e.data["day"]})],
    emits="orders.loaded",
)


@orders.node
def ingest(day: str) -> str:
    return f"ingested {day}"


audit = DAG("t_wait_audit", triggers=[on_event("orders.uploaded")])


@audit.node
def check(day: str) -> str:
    return f"checked {day}"


reports = DAG("t_wait_reports", triggers=[on_event("orders.loaded")])


@reports.node
def summarize(run: str, dag: str) -> str:
    return f"{dag} {run}"
