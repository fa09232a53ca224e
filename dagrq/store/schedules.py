"""Schedules in Redis: the leader's fenced lease, one claim per tick, each schedule's state.

Exactly one run per schedule and tick rests on one rule: a tick's run is written in the same
``MULTI/EXEC`` as its claim (``dagrq:sched:<dag>:<name>:tick:<ms>``), under a ``WATCH`` of the
claim and of the leader's lease (:func:`claim_guard`). A second leader (a failover, a paused
process waking up) either finds the claim or sees the lease changed, and writes nothing; a
leader that dies before ``EXEC`` has written nothing, so the next one fires the tick.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

from ..model.schedules import Schedule
from . import keys, runkeys
from .lifecycle import Guard

#: how long a claim of a tick is kept (a backfill reads it to skip ticks that already ran)
TICK_TTL_S = 30 * 24 * 3600

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) and 1 or 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def lead(connection: Any, token: str, lease_ms: int, dags: Sequence[str]) -> set[str]:
    """Take or renew the lease of each of ``dags`` for ``token`` (one round trip); the DAGs
    whose schedules it now leads. Each DAG has its own leader: a worker leads only DAGs it
    serves, so every DAG served anywhere has one."""
    pipe = connection.pipeline(transaction=False)
    for dag in dags:
        pipe.eval(_RENEW, 1, keys.scheduler_leader_key(dag), token, lease_ms)
    return {dag for dag, held in zip(dags, pipe.execute(), strict=True) if held}


def resign(connection: Any, token: str, dags: Sequence[str]) -> None:
    """Give the leases up (those ``token`` holds), so other leaders take over at once."""
    for dag in dags:
        connection.eval(_RELEASE, 1, keys.scheduler_leader_key(dag), token)


def leader(connection: Any, dag: str) -> str | None:
    """The token of the scheduler leading ``dag``'s schedules, if any."""
    found = connection.get(keys.scheduler_leader_key(dag))
    return found.decode() if found is not None else None


def _leader_key(schedule: str) -> str:
    """The lease a schedule (``<dag>:<name>``) is fired under."""
    return keys.scheduler_leader_key(schedule.split(":", 1)[0])


@dataclass
class ScheduleState:
    """What Redis keeps of one schedule."""

    last_tick_ms: int | None = None
    last_run: str | None = None
    paused: bool = False
    buffered_ms: int | None = None
    missed: int = 0
    skipped: int = 0
    #: how late the leader made the last tick's run (ms after the tick), or None
    late_ms: int | None = None


def state(connection: Any, schedule: str) -> ScheduleState:
    """One schedule's state (``<dag>:<name>``)."""
    return state_of(connection.hgetall(keys.schedule_key(schedule)))


def state_of(found: dict[bytes, bytes]) -> ScheduleState:
    """A schedule's state from its hash's fields (``HGETALL``)."""
    raw = {k.decode(): v.decode() for k, v in found.items()}
    return ScheduleState(
        last_tick_ms=int(raw["last_tick"]) if raw.get("last_tick") else None,
        last_run=raw.get("last_run") or None,
        paused=raw.get("paused") == "1",
        buffered_ms=int(raw["buffered"]) if raw.get("buffered") else None,
        missed=int(raw.get("missed", 0)),
        skipped=int(raw.get("skipped", 0)),
        late_ms=int(raw["late_ms"]) if raw.get("late_ms") else None,
    )


def register(connection: Any, schedules: Iterable[Schedule]) -> None:
    """Record the schedules a leader serves (``dagrq schedules`` lists them)."""
    described = {s.key: describe(s) for s in schedules}
    if described:
        connection.hset(keys.SCHEDULES_KEY, mapping=described)


def describe(schedule: Schedule) -> str:
    """A schedule as JSON (pydantic's, the whole schedule), for
    :data:`~dagrq.store.keys.SCHEDULES_KEY`."""
    return schedule.model_dump_json()


def known(connection: Any) -> dict[str, dict[str, Any]]:
    """Every schedule a leader has served: ``{<dag>:<name>: description}``."""
    raw = connection.hgetall(keys.SCHEDULES_KEY)
    return {k.decode(): json.loads(v) for k, v in sorted(raw.items())}


def rebuilt(connection: Any) -> list[Schedule]:
    """The schedules of :func:`known`, as :class:`Schedule` objects (enough to list their
    next fire times without their DAG's code)."""
    raw = connection.hgetall(keys.SCHEDULES_KEY)
    return [Schedule.model_validate_json(v) for _, v in sorted(raw.items())]


#: fire times ``listing`` gives per schedule
NEXT_FIRES = 3


def listing(connection: Any, declared: Sequence[Schedule]) -> list[dict[str, Any]]:
    """Each schedule with its state: ``{schedule, dag, name, spec, overlap, paused,
    last_tick, last_run, last_state, next, missed, skipped}`` (``next``: the next
    :data:`NEXT_FIRES` fire times in its zone, ISO 8601); the shape of ``dagrq schedules
    --json`` and the web view's."""
    from datetime import UTC, datetime

    def iso(ms: int | None) -> str | None:
        return datetime.fromtimestamp(ms / 1000, UTC).isoformat() if ms is not None else None

    found = states(connection, [s.key for s in declared])
    last_runs = [found[s.key].last_run for s in declared]
    last_states = run_states(connection, [r for r in last_runs if r])
    states_of_runs = dict(zip([r for r in last_runs if r], last_states, strict=True))
    now = datetime.now(UTC)
    out = []
    for schedule in declared:
        state = found[schedule.key]
        upcoming = []
        for tick in schedule.ticks(now, now.replace(year=now.year + 2)):
            upcoming.append(tick.isoformat())
            if len(upcoming) == NEXT_FIRES:
                break
        out.append(
            {
                "schedule": schedule.key,
                "dag": schedule.dag,
                "name": schedule.name,
                "spec": schedule.describe(),
                "overlap": schedule.overlap,
                "paused": state.paused,
                "last_tick": iso(state.last_tick_ms),
                "last_run": state.last_run,
                "last_state": states_of_runs.get(state.last_run or ""),
                "next": upcoming,
                "missed": state.missed,
                "skipped": state.skipped,
            }
        )
    return out


def run_states(connection: Any, run_ids: Sequence[str]) -> list[str | None]:
    """Each run's state (None when it is gone)."""
    pipe = connection.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hget(runkeys.run_key(run_id), "state")
    return [s.decode() if s is not None else None for s in pipe.execute()]


def set_paused(connection: Any, schedule: str, paused: bool) -> None:
    """Pause or resume one schedule (``<dag>:<name>``). Ticks that fall due while it is
    paused are not fired later."""
    connection.hset(keys.schedule_key(schedule), "paused", "1" if paused else "0")


def claimed(connection: Any, schedule: str, ticks_ms: Sequence[int]) -> list[str | None]:
    """What claimed each tick: a run id, ``skipped ...``, ``missed``, or None (not yet)."""
    found = connection.mget([keys.tick_key(schedule, t) for t in ticks_ms]) if ticks_ms else []
    return [v.decode() if v is not None else None for v in found]


def still_running(connection: Any, run_ids: Sequence[str]) -> list[str]:
    """Those of ``run_ids`` whose run is still ``running`` (an expired run is not)."""
    states = run_states(connection, run_ids)
    return [r for r, s in zip(run_ids, states, strict=True) if s == "running"]


def claim_guard(
    schedule: str, token: str, tick_ms: int, *, buffered: bool = False, force: bool = False
) -> Guard:
    """The guard a tick's run is written under: this leader still holds the lease and no one
    claimed the tick (unless ``force``: a backfill's reprocess); with the run, the claim, the
    schedule's last tick and its running set are written. ``buffered``: the run of the
    schedule's buffered tick, whose claim says ``buffered`` until then (cleared with it)."""
    claim = Claim(schedule, tick_ms, buffered)

    def allowed(pipe: Any) -> bool:
        if token and (pipe.get(_leader_key(schedule)) or b"").decode() != token:
            return False
        if force:
            return True
        kept = pipe.hget(keys.schedule_key(schedule), "buffered") if buffered else None
        return claim.free(pipe.get(claim.key), kept)

    watched = [claim.key, _leader_key(schedule)] if token else [claim.key]
    watched += [keys.schedule_key(schedule)] if buffered else []
    return Guard(watch=watched, allowed=allowed, write=partial(claim.write, token=token))


@dataclass(frozen=True)
class Claim:
    """The claim of one tick of one schedule, written with the tick's run."""

    schedule: str
    tick_ms: int
    buffered: bool = False

    @property
    def key(self) -> str:
        """The tick's claim key."""
        return keys.tick_key(self.schedule, self.tick_ms)

    def free(self, claimed: bytes | None, kept: bytes | None) -> bool:
        """Whether the tick may get its run, given its claim and the schedule's buffered tick:
        unclaimed; or, for the buffered tick, still ``buffered`` (no run yet)."""
        if self.buffered:
            return claimed == b"buffered" and kept == str(self.tick_ms).encode()
        return claimed is None

    def write(self, pipe: Any, run_id: str, *, token: str) -> None:
        """On ``pipe`` (in MULTI): the claim, the schedule's clock and last run (a leader's
        tick; a backfill leaves them), its running set."""
        pipe.set(self.key, run_id, ex=TICK_TTL_S)
        if token:
            _advance(pipe, self.schedule, self.tick_ms)
            late_ms = max(0, int(time.time() * 1000) - self.tick_ms)
            pipe.hset(
                keys.schedule_key(self.schedule),
                mapping={"last_run": run_id, "late_ms": late_ms},
            )
        if self.buffered:
            pipe.hdel(keys.schedule_key(self.schedule), "buffered")
        pipe.zadd(keys.schedule_runs_key(self.schedule), {run_id: self.tick_ms})


def watch_claims(token: str, claims: Sequence[Claim]) -> list[str]:
    """The keys a batch of claims is written under (see :func:`free_claims`)."""
    leases = sorted({_leader_key(c.schedule) for c in claims})
    watched = [*leases, *(c.key for c in claims)]
    return watched + sorted({keys.schedule_key(c.schedule) for c in claims if c.buffered})


def free_claims(pipe: Any, token: str, claims: Sequence[Claim]) -> list[bool] | None:
    """In the ``WATCH`` of :func:`watch_claims`: which claims are free (None: ``token`` no
    longer leads)."""
    leases = sorted({_leader_key(c.schedule) for c in claims})
    if any(v != token.encode() for v in pipe.mget(leases)):
        return None
    claimed = pipe.mget([c.key for c in claims])
    kept = [pipe.hget(keys.schedule_key(c.schedule), "buffered") if c.buffered else None
            for c in claims]  # fmt: skip
    return [c.free(v, k) for c, v, k in zip(claims, claimed, kept, strict=True)]


_ADVANCE = """
local now = tonumber(redis.call('HGET', KEYS[1], 'last_tick') or '0')
if tonumber(ARGV[1]) > now then redis.call('HSET', KEYS[1], 'last_tick', ARGV[1]) end
"""


def _advance(pipe: Any, schedule: str, tick_ms: int) -> None:
    """The schedule's clock moves forward to ``tick_ms``, never back (a buffered tick, a
    late claim)."""
    pipe.eval(_ADVANCE, 1, keys.schedule_key(schedule), tick_ms)


def states(connection: Any, schedules: Sequence[str]) -> dict[str, ScheduleState]:
    """:func:`state` of several schedules, in one round trip."""
    pipe = connection.pipeline(transaction=False)
    for schedule in schedules:
        pipe.hgetall(keys.schedule_key(schedule))
    return {s: state_of(raw) for s, raw in zip(schedules, pipe.execute(), strict=True)}


def running_of(connection: Any, schedules: Sequence[str]) -> dict[str, list[str]]:
    """Each schedule's runs still running, ended ones dropped from its set (three round
    trips whatever the number of schedules)."""
    pipe = connection.pipeline(transaction=False)
    for schedule in schedules:
        pipe.zrange(keys.schedule_runs_key(schedule), 0, -1)
    listed = {
        s: [r.decode() for r in found] for s, found in zip(schedules, pipe.execute(), strict=True)
    }
    every = [r for runs in listed.values() for r in runs]
    running = set(still_running(connection, every)) if every else set()
    pipe = connection.pipeline(transaction=False)
    for schedule, runs in listed.items():
        ended = [r for r in runs if r not in running]
        if ended:
            pipe.zrem(keys.schedule_runs_key(schedule), *ended)
    pipe.execute()
    return {s: [r for r in runs if r in running] for s, runs in listed.items()}


def settle(connection: Any, schedule: str, token: str, tick_ms: int, outcome: str) -> bool:
    """Record that ``tick`` made no run and why (``skipped: ...``, ``buffered``, ``missed``),
    as the leader holding ``token``; False when it no longer leads or the tick was claimed."""
    from redis.exceptions import WatchError

    guard = claim_guard(schedule, token, tick_ms)
    with connection.pipeline(transaction=True) as pipe:
        pipe.watch(*guard.watch)
        if not guard.allowed(pipe):
            return False
        pipe.multi()
        pipe.set(keys.tick_key(schedule, tick_ms), outcome, ex=TICK_TTL_S)
        _advance(pipe, schedule, tick_ms)
        counter = outcome.split(":")[0].split()[0]
        if counter in ("skipped", "missed"):
            pipe.hincrby(keys.schedule_key(schedule), counter, 1)
        if counter == "buffered":
            pipe.hsetnx(keys.schedule_key(schedule), "buffered", tick_ms)
        try:
            pipe.execute()
        except WatchError:
            return False
    return True


def start_clock(connection: Any, schedule: str, token: str, tick_ms: int) -> None:
    """Set a new schedule's clock (its first look: ticks before ``tick_ms`` never fire)."""
    if (connection.get(_leader_key(schedule)) or b"").decode() == token:
        connection.hsetnx(keys.schedule_key(schedule), "last_tick", tick_ms)


def pause_clock(connection: Any, schedule: str, token: str, tick_ms: int) -> None:
    """A paused schedule's clock follows the time: its ticks meanwhile never fire."""
    if (connection.get(_leader_key(schedule)) or b"").decode() == token:
        connection.hset(keys.schedule_key(schedule), "last_tick", tick_ms)


# ------------------------------------------------------------------ backfills
#: how long a backfill's record is kept after it started
BACKFILL_TTL_S = 30 * 24 * 3600


def start_backfill(
    connection: Any, backfill_id: str, schedule: Schedule, ticks: Sequence[Any]
) -> None:
    """Record a backfill: its schedule, its ticks, ``running``."""
    key = keys.backfill_key(backfill_id)
    with connection.pipeline(transaction=True) as pipe:
        pipe.hset(
            key,
            mapping={
                "schedule": schedule.key,
                "state": "running",
                "ticks": len(ticks),
                "from": ticks[0].isoformat() if ticks else "",
                "to": ticks[-1].isoformat() if ticks else "",
                "created_at": time.time(),
            },
        )
        pipe.expire(key, BACKFILL_TTL_S)
        pipe.zadd(keys.BACKFILLS_KEY, {backfill_id: time.time()})
        pipe.execute()


def add_backfill_run(connection: Any, backfill_id: str, run_id: str) -> None:
    """Add a run to a backfill's record."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.rpush(keys.backfill_runs_key(backfill_id), run_id)
        pipe.expire(keys.backfill_runs_key(backfill_id), BACKFILL_TTL_S)
        pipe.execute()


def backfill_runs(connection: Any, backfill_id: str) -> list[str]:
    """The runs a backfill made, in order."""
    return [r.decode() for r in connection.lrange(keys.backfill_runs_key(backfill_id), 0, -1)]


def backfill_state(connection: Any, backfill_id: str) -> str | None:
    """``running``, ``done``, ``canceled``, or None for no such backfill."""
    found = connection.hget(keys.backfill_key(backfill_id), "state")
    return found.decode() if found is not None else None


def end_backfill(connection: Any, backfill_id: str, how: str) -> None:
    """Mark a backfill ``done`` or ``canceled``."""
    connection.hset(keys.backfill_key(backfill_id), "state", how)


def backfills(connection: Any, limit: int = 50) -> list[dict[str, Any]]:
    """The newest backfills, newest first: id, schedule, state, ticks, range, runs."""
    out = []
    for raw_id in connection.zrevrange(keys.BACKFILLS_KEY, 0, limit - 1):
        backfill_id = raw_id.decode()
        found = connection.hgetall(keys.backfill_key(backfill_id))
        if not found:
            continue
        record = {k.decode(): v.decode() for k, v in found.items()}
        record.pop("runs", None)
        out.append({"id": backfill_id, **record, "runs": backfill_runs(connection, backfill_id)})
    return out
