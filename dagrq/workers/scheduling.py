"""The scheduler: one leader at a time fires the ticks of the schedules its DAGs declare.

Every ``dagrq worker`` (its supervisor) runs a :class:`SchedulerThread` when one of its DAGs
has a schedule. Each pass the thread takes or renews the leader lease
(:func:`dagrq.store.schedules.lead`); the leader looks at each schedule's ticks since its
last one, oldest first, and for each tick that is due (its time plus its jitter has passed):

- older than the schedule's catch-up window (the 60 s misfire grace unless ``catchup=``):
  recorded ``missed``;
- older than the misfire grace but inside the window (a catch-up): fired once the
  schedule's previous run has ended (one at a time, oldest first);
- else by the overlap policy, while a run of the schedule still runs: ``skip`` records the
  tick skipped, ``buffer_one`` keeps the first such tick and fires it when the runs end
  (later ones are skipped), ``allow`` fires, ``cancel_other`` cancels the running ones, then
  fires.

A tick's run and its claim are one transaction under the lease (see
:mod:`dagrq.store.schedules`): exactly one run per tick whatever the number of leaders.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from ..model.dag import DAG
from ..model.node import one_line_error
from ..model.schedules import MISFIRE_GRACE_S, Schedule, jitter_s, tick_params
from ..store import lifecycle
from ..store import schedules as stored
from ..store.runs import RunStore

log = logging.getLogger(__name__)

#: the leader lease; a dead leader's ticks fire this much later at most (then late, once)
LEASE_MS = 5_000
#: the longest a pass sleeps (a new tick, a pause, a lost lease are seen within it)
MAX_SLEEP_S = 1.0


def tick_ms(moment: datetime) -> int:
    """A moment in Unix milliseconds (how ticks are keyed)."""
    return round(moment.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class Scheduler:
    """The leader's work over ``dags``' schedules, one :meth:`step` at a time."""

    def __init__(self, connection: Any, dags: Sequence[DAG], token: str | None = None) -> None:
        self.connection = connection
        self.dags = {d.name: d for d in dags if d.schedules}
        self.schedules = [s for d in dags for s in d.schedules]
        #: ``<host>:<pid>:<random>``: the lease says which process leads
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        #: the DAGs whose schedules this scheduler leads (each DAG has its own lease)
        self.leading: set[str] = set()
        self._registered = False

    def step(self, now: datetime | None = None) -> float:
        """Renew the lease and, as leader, fire what is due; the seconds until the next
        tick falls due (at most :data:`MAX_SLEEP_S`). Every schedule's state is read in a
        few round trips, then the step's runs are written in one transaction (one by one
        if a watched key changed meanwhile)."""
        was = self.leading
        self.leading = stored.lead(self.connection, self.token, LEASE_MS, list(self.dags))
        if self.leading != was:
            log.info("scheduler %s leads %s", self.token, sorted(self.leading) or "nothing")
        led = [s for s in self.schedules if s.dag in self.leading]
        if not led:
            return MAX_SLEEP_S
        if not self._registered:
            self._register()
        now = now or datetime.now(UTC)
        names = [s.key for s in led]
        states = stored.states(self.connection, names)
        # an `allow` schedule reads its running runs only for a catch-up (see _decide)
        watched = [s.key for s in led if s.overlap != "allow"]
        running: dict[str, list[str] | None] = dict.fromkeys(names)
        running |= stored.running_of(self.connection, watched) if watched else {}
        step = _Step()
        wait = MAX_SLEEP_S
        for schedule in self.schedules:
            try:
                found = self._decide(
                    schedule, states[schedule.key], running[schedule.key], now, step
                )
                wait = min(wait, found)
            except Exception as exc:  # one schedule's trouble never stops the others
                log.warning("schedule %s: %s", schedule.key, one_line_error(exc))
        self._write(step)
        return max(0.0, wait)

    def _register(self) -> None:
        stored.register(self.connection, self.schedules)
        served = {s.key for s in self.schedules}
        for key, described in stored.known(self.connection).items():
            if key not in served and described["dag"] in self.dags:
                log.warning("schedule %s is no longer declared by DAG %r: it stops firing",
                            key, described["dag"])  # fmt: skip
        self._registered = True

    def _decide(
        self,
        schedule: Schedule,
        state: stored.ScheduleState,
        known: list[str] | None,
        now: datetime,
        step: _Step,
    ) -> float:
        """What ``schedule``'s due ticks get (into ``step``); seconds until its next one.
        ``known``: its running runs, None when not read yet (an ``allow`` schedule)."""
        key = schedule.key

        def running_now() -> list[str]:
            nonlocal known
            if known is None:
                known = stored.running_of(self.connection, [key])[key]
            return known

        if state.last_tick_ms is None:  # its first look: it starts now (or at start=)
            first = schedule.start if schedule.catchup is True and schedule.start else now
            stored.start_clock(self.connection, key, self.token, tick_ms(first) - 1)
            return 0.0
        if state.paused:
            stored.pause_clock(self.connection, key, self.token, tick_ms(now))
            return MAX_SLEEP_S
        buffered = state.buffered_ms is not None
        busy = bool(known) if schedule.overlap != "allow" else False
        if buffered and not busy:
            assert state.buffered_ms is not None
            step.fires.append((schedule, _at(state.buffered_ms), True))
            return 0.0
        for tick in schedule.ticks(_at(state.last_tick_ms), now + timedelta(seconds=2)):
            due = tick + timedelta(seconds=jitter_s(schedule, tick))
            if due > now:
                return (due - now).total_seconds()
            age = (now - tick).total_seconds()
            if age > schedule.catchup_s:
                step.settles.append((key, tick, "missed"))
                log.warning("schedule %s: tick %s missed (%.0f s late)", key, tick, age)
            elif age > MISFIRE_GRACE_S and (busy or running_now()):
                return MAX_SLEEP_S  # a catch-up: one run at a time, oldest first
            elif busy and schedule.overlap == "skip":
                step.settles.append((key, tick, "skipped: overlap"))
            elif busy and schedule.overlap == "buffer_one":
                step.settles.append((key, tick, "skipped: buffer full" if buffered else "buffered"))
                buffered = True
            else:
                if busy and schedule.overlap == "cancel_other":
                    for run_id in running_now():
                        lifecycle.cancel(RunStore(self.connection, run_id))
                step.fires.append((schedule, tick, False))
                busy = True
                if age > MISFIRE_GRACE_S or schedule.overlap == "cancel_other":
                    return MAX_SLEEP_S  # a catch-up's next tick (or a newer one) waits
        return MAX_SLEEP_S

    def _write(self, step: _Step) -> None:
        """The step's runs in one transaction (else one by one), then its settled ticks."""
        if step.fires:
            made = fire_all(self.connection, self.dags, step.fires, self.token)
            if made is None:  # a watched key changed (another leader?): each on its own
                for schedule, tick, buffered in step.fires:
                    fire(self.connection, self.dags[schedule.dag], schedule, tick, self.token,
                         buffered=buffered)  # fmt: skip
        for key, tick, outcome in step.settles:
            stored.settle(self.connection, key, self.token, tick_ms(tick), outcome)


@dataclass
class _Step:
    """What one pass decided: runs to write, ticks to settle without a run."""

    fires: list[tuple[Schedule, datetime, bool]] = field(default_factory=list)
    settles: list[tuple[str, datetime, str]] = field(default_factory=list)


def _new_run(dag: DAG, schedule: Schedule, tick: datetime, trigger: str | None = None,
             tags: Sequence[str] = (), write: Any = None) -> lifecycle.NewRun:  # fmt: skip
    """The run of ``schedule``'s ``tick``: its parameters (the schedule's and the tick's
    logical time, for the nodes that ask), tags and trigger."""
    values = {**schedule.params}
    asked = dag.params_model.model_fields
    values |= {k: v for k, v in tick_params(schedule, tick).items() if k in asked}
    return lifecycle.NewRun(
        dag.plan,
        dag.validate_params(values),
        tags=[f"schedule:{schedule.name}", *tags],
        trigger=trigger or f"schedule {schedule.key} @ {tick.isoformat()}",
        write=write,
    )


def fire_all(
    connection: Any,
    dags: dict[str, DAG],
    fires: Sequence[tuple[Schedule, datetime, bool]],
    token: str,
) -> list[str] | None:
    """Write the runs of several ticks, with their claims, in one transaction as the leader
    holding ``token``; ticks claimed meanwhile are left out. None when nothing was written
    because a watched key changed or ``token`` no longer leads."""
    claims = [stored.Claim(s.key, tick_ms(tick), buffered) for s, tick, buffered in fires]

    def prepare(pipe: Any) -> list[lifecycle.NewRun] | None:
        free = stored.free_claims(pipe, token, claims)
        if free is None:
            return None
        news = []
        for (schedule, tick, _), claim, ok in zip(fires, claims, free, strict=True):
            if not ok:
                continue
            try:
                write = partial(claim.write, token=token)
                news.append(_new_run(dags[schedule.dag], schedule, tick, write=write))
            except Exception as exc:  # one schedule's bad run never holds back the others
                log.warning("schedule %s: %s", schedule.key, one_line_error(exc))
        return news

    made = lifecycle.create_all_if(connection, stored.watch_claims(token, claims), prepare)
    if made is None:
        return None
    for store in made:
        log.info("scheduler: run %s", store.run_id)
    return [store.run_id for store in made]


def fire(
    connection: Any,
    dag: DAG,
    schedule: Schedule,
    tick: datetime,
    token: str,
    *,
    buffered: bool = False,
    force: bool = False,
    trigger: str | None = None,
    tags: Sequence[str] = (),
) -> str | None:
    """Write the run of ``schedule``'s ``tick`` under its claim; its id, or None when the
    tick was claimed already (or ``token`` no longer leads). ``token`` empty: a backfill."""
    guard = stored.claim_guard(schedule.key, token, tick_ms(tick), buffered=buffered, force=force)
    new = _new_run(dag, schedule, tick, trigger, tags)
    made = lifecycle.create_if(
        connection, new.plan, new.params, guard, tags=new.tags, trigger=new.trigger
    )
    if made is None:
        return None
    log.info("schedule %s: tick %s -> run %s", schedule.key, tick.isoformat(), made.run_id)
    return made.run_id


class SchedulerThread(threading.Thread):
    """Runs a :class:`Scheduler` until :meth:`stop`; gives the lease up when stopped."""

    def __init__(self, connect: Callable[[], Any], dags: Sequence[DAG]) -> None:
        super().__init__(name="dagrq-scheduler", daemon=True)
        self.scheduler = Scheduler(connect(), dags)
        self._stopped = threading.Event()

    def run(self) -> None:
        """Step, sleep until the next tick, again; Redis trouble is logged and retried."""
        while not self._stopped.is_set():
            try:
                wait = self.scheduler.step()
            except Exception as exc:  # Redis away: try again; the lease lapses meanwhile
                log.warning("scheduler: %s", one_line_error(exc))
                wait = MAX_SLEEP_S
            self._stopped.wait(wait)
        try:
            stored.resign(
                self.scheduler.connection, self.scheduler.token, list(self.scheduler.dags)
            )
        except Exception as exc:
            log.debug("scheduler resign: %s", one_line_error(exc))

    def stop(self) -> None:
        """Stop after the current pass."""
        self._stopped.set()
