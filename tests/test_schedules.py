"""Schedules: declaration and validation, ticks and DST (pure); with real workers, exactly one
run per tick whatever the leaders do, overlap policies, backfills."""

from __future__ import annotations

import itertools
import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
import redis

from dagrq import DAG, DAGError, loader
from dagrq.client import Run
from dagrq.model.schedules import tick_params
from dagrq.store import schedules as stored

from .helpers import Workers, dagrq, most_at_once, pipeline, tick_claims, wait_for


def _utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "says"),
    [
        ({"cron": "61 * * * *"}, "the minute field '61' is not valid"),
        ({"cron": "*/2 * * * * 8"}, "the day of week field '8' is not valid"),
        ({"cron": "0 3 * *"}, "has 4 fields: give 5"),
        ({"cron": "0 3 * * *", "timezone": "Mars/Base"}, "is not an IANA zone"),
        ({"cron": "0 3 * * *", "overlap": "queue"}, "(overlap): Input should be 'skip'"),
        ({}, "give one of cron= (a cron string) or every= (a timedelta)"),
        ({"every": timedelta(milliseconds=10)}, "is under a second"),
        ({"cron": "0 3 * * *", "name": "a b"}, "schedule name 'a b' is not allowed"),
    ],
)
def test_a_bad_schedule_is_one_line_naming_the_dag_the_schedule_and_the_field(
    fields: dict[str, object], says: str
) -> None:
    dag = DAG("orders")
    with pytest.raises(DAGError) as caught:
        dag.schedule(**fields)  # type: ignore[arg-type]
    message = str(caught.value)
    assert message.startswith("DAG 'orders', schedule ") and says in message, message
    assert "\n" not in message and dag.schedules == ()


def test_two_schedules_of_one_name_are_refused() -> None:
    dag = DAG("orders", schedule="0 3 * * *")
    with pytest.raises(DAGError, match="two schedules named 'default'"):
        dag.schedule("0 4 * * *", name="default")
    assert [s.name for s in dag.schedules] == ["default"]


def test_a_zone_that_skips_or_repeats_the_hour_fires_once_per_wall_clock_time() -> None:
    dag = DAG("dst")
    daily = dag.schedule("30 2 * * *", timezone="Europe/Paris")
    spring = [t.isoformat() for t in daily.ticks(_utc(2026, 3, 28), _utc(2026, 3, 31))]
    assert spring == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:00:00+02:00",  # 02:30 does not exist that day: the first instant after
        "2026-03-30T02:30:00+02:00",
    ]
    autumn = [t.isoformat() for t in daily.ticks(_utc(2026, 10, 24), _utc(2026, 10, 27))]
    assert autumn == [  # 02:30 happens twice on the 25th: once
        "2026-10-24T02:30:00+02:00",
        "2026-10-25T02:30:00+02:00",
        "2026-10-26T02:30:00+01:00",
    ]
    quarterly = dag.schedule("*/30 * * * *", timezone="Europe/Paris", name="q")
    real = list(quarterly.ticks(_utc(2026, 10, 24, 23, 59), _utc(2026, 10, 25, 2, 1)))
    assert len(real) == 5  # a wildcard hour fires by real time, through both passes


def test_ticks_carry_their_interval_and_a_manual_run_gets_now() -> None:
    dag = DAG("logical")
    hourly = dag.schedule(every=timedelta(hours=1), start=_utc(2026, 1, 1))
    ticks = list(hourly.ticks(_utc(2026, 1, 1, 0, 30), _utc(2026, 1, 1, 3)))
    assert [t.hour for t in ticks] == [1, 2, 3]
    assert tick_params(hourly, ticks[0]) == {
        "logical_time": "2026-01-01T01:00:00+00:00",
        "interval_start": "2026-01-01T00:00:00+00:00",
        "interval_end": "2026-01-01T01:00:00+00:00",
    }

    from tests.pipelines.scheduled import hourly as by_hand

    before = datetime.now(UTC)
    start, end = by_hand.run_local()["extract"].split("/")
    assert start == end and before <= datetime.fromisoformat(start) <= datetime.now(UTC)


def test_one_run_per_tick_with_three_leaders_and_two_leader_kills(
    conn: redis.Redis, workers: Workers
) -> None:
    """A `*/2 s` schedule served by 3 workers for 60 s; the leader is SIGKILLed at 15 s and
    30 s: every tick from the first to the last made exactly one run, none missing."""
    procs = workers.start(pipeline("scheduled", "every2s"), 3)
    began, killed = time.monotonic(), []
    while time.monotonic() - began < 60:
        if len(killed) < 2 and time.monotonic() - began > 15 * (len(killed) + 1):
            token = stored.leader(conn, "t_every2s")
            assert token is not None, "no leader"
            pid = int(token.split(":")[1])
            assert pid in [p.pid for p in procs] and pid not in killed
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)
        time.sleep(0.2)
    claims = tick_claims(conn, "t_every2s:fast")
    ticks = sorted(claims)
    assert len(ticks) >= 25, claims
    assert all(b - a == 2000 for a, b in itertools.pairwise(ticks)), ticks  # none missing
    assert all(len(v) == 32 for v in claims.values()), claims  # each a run, none missed/skipped
    dag = loader.load(pipeline("scheduled", "every2s"))
    runs = Run.list(conn, dag="t_every2s", limit=1000)
    assert sorted(r.id for r in runs) == sorted(claims.values())  # one run per tick, no other
    logical = Counter(r.params["logical_time"] for r in runs)
    assert max(logical.values()) == 1 and len(logical) == len(ticks)
    wait_for(lambda: all(Run(r, conn, dag).status().done for r in claims.values()), 30, "ended")
    assert {Run(r, conn, dag).status().state for r in claims.values()} == {"succeeded"}


def _spans(conn: redis.Redis, policy: str) -> list[tuple[float, float]]:
    """(start, end) of each run of the ``slow`` DAG's ``policy`` schedule that ended."""
    starts: dict[str, float] = {}
    spans = []
    for raw in conn.lrange(f"test:sched:slow:{policy}", 0, -1):
        what, at, logical = raw.decode().split()
        if what == "start":
            starts[logical] = float(at)
        else:
            spans.append((starts[logical], float(at)))
    return sorted(spans)


def test_overlap_skip_and_buffer_one_never_run_two_at_once_allow_does(
    conn: redis.Redis, workers: Workers
) -> None:
    """Three every-second schedules of a 2.5 s node: `skip` runs one at a time and skips the
    ticks meanwhile; `buffer_one` runs one at a time and keeps one tick for after (so a run
    starts right after the previous ends); `allow` overlaps."""
    workers.start(pipeline("scheduled", "slow"), 1, "-c", "6")
    time.sleep(12)
    workers.stop()
    skip, buffered, allowed = (_spans(conn, p) for p in ("skip", "buffer_one", "allow"))
    assert len(skip) >= 2 and len(buffered) >= 2 and len(allowed) >= 4, (skip, buffered, allowed)
    assert most_at_once(skip) == 1 and most_at_once(buffered) == 1
    assert most_at_once(allowed) >= 2
    skipped = stored.state(conn, "t_slow:skip").skipped
    assert skipped >= 2  # the ticks that fell while a run ran
    gaps = [b[0] - a[1] for a, b in itertools.pairwise(buffered)]
    assert max(gaps) < 1.5, gaps  # the buffered tick fires as soon as the run before ends
    assert stored.state(conn, "t_slow:buffer_one").skipped >= 1  # a second buffered tick: no


def test_a_backfill_runs_each_tick_once_and_a_second_makes_none(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    address = pipeline("scheduled", "hourly")
    workers.start(address, 1, "-c", "2")
    day = ("--from", "2026-11-01T00:00", "--to", "2026-11-01T23:00", "--url", redis_url)
    dry = dagrq("backfill", address, *day, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    rows = json.loads(dry.stdout)
    assert len(rows) == 24 and {r["action"] for r in rows} == {"run"}
    assert rows[0]["tick"] == "2026-11-01T00:00:00+01:00"  # the schedule's zone
    assert Run.list(conn) == [] and not list(conn.scan_iter("dagrq:sched:*:tick:*"))
    done = dagrq("backfill", address, *day, "--max-active", "6", "--json", timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert len(report["runs"]) == 24 and set(report["runs"].values()) == {"succeeded"}
    dag = loader.load(address)
    spans = sorted(Run(r, conn, dag).result("extract") for r in report["runs"])
    starts = [datetime.fromisoformat(s.split("/")[0]) for s in spans]
    assert len(set(starts)) == 24
    assert all(b - a == timedelta(hours=1) for a, b in itertools.pairwise(starts))
    tagged = Run.list(conn, tag=f"backfill:{report['id']}", limit=100)
    assert len(tagged) == 24
    assert all(r.trigger.startswith(f"backfill {report['id']} @ 2026-11-01T") for r in tagged)
    listed = json.loads(dagrq("runs", "--json", "--url", redis_url).stdout)
    assert {r["trigger"].split()[0] for r in listed} == {"backfill"}
    again = dagrq("backfill", address, *day, "--reprocess", "none", "--json")
    assert again.returncode == 0 and json.loads(again.stdout)["runs"] == {}
    assert len(Run.list(conn, dag="t_hourly", limit=100)) == 24


def test_schedules_lists_state_and_next_fires_and_pauses(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    workers.start(pipeline("scheduled", "every2s"), 1)
    wait_for(lambda: stored.state(conn, "t_every2s:fast").last_run, 20, "a first run")
    out = dagrq("schedules", "--json", "--url", redis_url)
    assert out.returncode == 0, out.stderr
    (entry,) = json.loads(out.stdout)
    assert entry["schedule"] == "t_every2s:fast" and entry["paused"] is False
    assert entry["spec"] == "cron '*/2 * * * * *' UTC" and len(entry["next"]) == 3
    assert entry["last_run"] and entry["last_tick"]
    nexts = [datetime.fromisoformat(n) for n in entry["next"]]
    assert all(b - a == timedelta(seconds=2) for a, b in itertools.pairwise(nexts))
    paused = dagrq("schedules", "pause", "fast", "--url", redis_url)
    assert paused.returncode == 0 and "t_every2s:fast paused" in paused.stdout
    time.sleep(1)
    count = len(Run.list(conn, dag="t_every2s", limit=1000))
    time.sleep(5)
    assert len(Run.list(conn, dag="t_every2s", limit=1000)) == count  # nothing while paused
    assert dagrq("schedules", "resume", "t_every2s:fast", "--url", redis_url).returncode == 0
    wait_for(lambda: len(Run.list(conn, dag="t_every2s", limit=1000)) > count, 10, "fires again")
    unknown = dagrq("schedules", "pause", "nope", "--url", redis_url)
    assert unknown.returncode == 2 and "no schedule 'nope'" in unknown.stderr


def test_catch_up_fires_missed_ticks_in_the_window_one_at_a_time_and_records_the_rest(
    conn: redis.Redis,
) -> None:
    """An hourly schedule with a 3 h catch-up window, last fired 5 h ago (the clock is the
    test's): the 3 ticks older than the window are recorded missed; the 2 inside it fire
    oldest first, each once the one before has ended; the tick of now fires after them."""
    from dagrq.store import keys, lifecycle
    from dagrq.store.runs import RunStore
    from dagrq.workers.scheduling import Scheduler
    from tests.pipelines.scheduled import caught

    now = _utc(2030, 1, 1, 10, 0, 10)
    conn.hset(
        keys.schedule_key("t_caught:hourly"),
        "last_tick",
        int(_utc(2030, 1, 1, 4, 59).timestamp() * 1000),
    )
    leader = Scheduler(conn, [caught])
    fired: list[str] = []
    for _ in range(4):
        leader.step(now)
        runs = Run.list(conn, dag="t_caught", limit=100)
        for run in runs:
            if run.id not in fired:
                fired.append(run.id)
                lifecycle.cancel(RunStore(conn, run.id))  # it ended: the next may fire
    ticks = [Run.fetch(r, conn).status().params["logical_time"] for r in fired]
    assert [datetime.fromisoformat(t).hour for t in ticks] == [8, 9, 10]
    state = stored.state(conn, "t_caught:hourly")
    assert state.missed == 3  # 05:00, 06:00, 07:00: older than the window
    assert (
        Run.fetch(fired[0], conn)
        .status()
        .trigger.startswith("schedule t_caught:hourly @ 2030-01-01T08:00:00")
    )


def test_a_schedule_whose_params_the_dag_refuses_is_one_line_at_validation() -> None:
    from tests.pipelines.scheduled import wrong

    with pytest.raises(DAGError) as caught:
        wrong.validate()
    assert str(caught.value).startswith("DAG 't_wrong', schedule 'wrong': ")
    assert "colour" in str(caught.value) and "\n" not in str(caught.value)


def test_a_backfill_is_canceled_as_one_unit(conn: redis.Redis, redis_url: str) -> None:
    """No worker runs its runs: `backfill cancel ID` stops the runner (exit 1) after at most
    --max-active runs, and cancels them."""
    import subprocess
    import sys

    address = pipeline("scheduled", "hourly")
    day = ("--from", "2026-11-02T00:00", "--to", "2026-11-02T23:00", "--url", redis_url)
    runner = subprocess.Popen(
        [sys.executable, "-m", "dagrq", "backfill", address, *day, "--max-active", "2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        found = wait_for(lambda: stored.backfills(conn), 30, "the backfill recorded")
        (record,) = found
        wait_for(lambda: len(stored.backfill_runs(conn, record["id"])) == 2, 30, "2 runs")
        listed = dagrq("backfill", "list", "--json", "--url", redis_url)
        assert json.loads(listed.stdout)[0]["state"] == "running"
        out = dagrq("backfill", "cancel", record["id"], "--url", redis_url)
        assert out.returncode == 0, out.stderr
        assert runner.wait(timeout=30) == 1
    finally:
        runner.kill()
    runs = stored.backfill_runs(conn, record["id"])
    assert len(runs) == 2  # --max-active: the other 22 ticks never ran
    assert stored.run_states(conn, runs) == ["canceled", "canceled"]
    unknown = dagrq("backfill", "cancel", "nope", "--url", redis_url)
    assert unknown.returncode == 2


def test_each_dag_has_its_own_leader_so_workers_of_other_dags_never_starve_it(
    conn: redis.Redis,
) -> None:
    """Two schedulers serving different DAGs both lead: a worker of DAG A holding a single
    global lease would leave DAG B's schedules unfired."""
    from dagrq.workers.scheduling import Scheduler
    from tests.pipelines.scheduled import caught, every2s

    first, second = Scheduler(conn, [every2s]), Scheduler(conn, [caught])
    first.step()
    second.step()
    assert first.leading == {"t_every2s"} and second.leading == {"t_caught"}
    both = Scheduler(conn, [every2s, caught])
    both.step()
    assert both.leading == set()  # each DAG already has its leader
    assert stored.leader(conn, "t_every2s") == first.token


def test_the_scheduled_example_validates_and_runs_by_hand() -> None:
    out = dagrq("validate", "examples/hourly.py:dag")
    assert out.returncode == 0, out.stderr
    listed = dagrq("schedules", "examples/hourly.py:dag", "--json", "--url", "redis://127.0.0.1:1")
    assert listed.returncode == 2  # it reads Redis: an unreachable one is one line
    dag = loader.load("examples/hourly.py:dag")
    assert [s.name for s in dag.schedules] == ["default", "weekday_digest"]
    assert dag.run_local()["summary"].startswith("hour ending ")
