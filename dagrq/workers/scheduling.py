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
from datetime import UTC, datetime, timedelta
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


def _ms(moment: datetime) -> int:
    return round(moment.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


class Scheduler:
    """The leader's work over ``dags``' schedules, one :meth:`step` at a time."""

    def __init__(self, connection: Any, dags: Sequence[DAG], token: str | None = None) -> None:
        self.connection = connection
        self.dags = {d.name: d for d in dags}
        self.schedules = [s for d in dags for s in d.schedules]
        #: ``<host>:<pid>:<random>``: the lease says which process leads
        self.token = token or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.leading = False
        self._registered = False

    def step(self, now: datetime | None = None) -> float:
        """Renew the lease and, as leader, fire what is due; the seconds until the next
        tick falls due (at most :data:`MAX_SLEEP_S`)."""
        was = self.leading
        self.leading = stored.lead(self.connection, self.token, LEASE_MS)
        if self.leading != was:
            log.info("scheduler %s: %s", self.token, "leads" if self.leading else "follows")
        if not self.leading:
            return MAX_SLEEP_S
        if not self._registered:
            self._register()
        now = now or datetime.now(UTC)
        wait = MAX_SLEEP_S
        for schedule in self.schedules:
            try:
                wait = min(wait, self._schedule(schedule, now))
            except Exception as exc:  # one schedule's trouble never stops the others
                log.warning("schedule %s: %s", schedule.key, one_line_error(exc))
        return max(0.0, wait)

    def _register(self) -> None:
        stored.register(self.connection, self.schedules)
        served = {s.key for s in self.schedules}
        for key, described in stored.known(self.connection).items():
            if key not in served and described["dag"] in self.dags:
                log.warning("schedule %s is no longer declared by DAG %r: it stops firing",
                            key, described["dag"])  # fmt: skip
        self._registered = True

    def _schedule(self, schedule: Schedule, now: datetime) -> float:
        """Handle ``schedule``'s due ticks; seconds until its next one."""
        key, state = schedule.key, stored.state(self.connection, schedule.key)
        if state.last_tick_ms is None:  # its first look: it starts now (or at start=)
            first = schedule.start if schedule.catchup is True and schedule.start else now
            stored.start_clock(self.connection, key, self.token, _ms(first) - 1)
            state = stored.state(self.connection, key)
            if state.last_tick_ms is None:
                return MAX_SLEEP_S
        if state.paused:
            stored.pause_clock(self.connection, key, self.token, _ms(now))
            return MAX_SLEEP_S
        running = self._running(key)
        if state.buffered_ms is not None and not running:
            self._fire(schedule, _at(state.buffered_ms), buffered=True)
            return 0.0
        after = _at(state.last_tick_ms)
        for tick in schedule.ticks(after, now + timedelta(seconds=MAX_SLEEP_S * 2)):
            due = tick + timedelta(seconds=jitter_s(schedule, tick))
            if due > now:
                return (due - now).total_seconds()
            age = (now - tick).total_seconds()
            if age > schedule.catchup_s:
                stored.settle(self.connection, key, self.token, _ms(tick), "missed")
                log.warning("schedule %s: tick %s missed (%.0f s late)", key, tick, age)
            elif age > MISFIRE_GRACE_S and running:
                return MAX_SLEEP_S  # a catch-up: one run at a time, oldest first
            elif running and schedule.overlap == "skip":
                stored.settle(self.connection, key, self.token, _ms(tick), "skipped: overlap")
            elif running and schedule.overlap == "buffer_one":
                outcome = "skipped: buffer full" if state.buffered_ms else "buffered"
                stored.settle(self.connection, key, self.token, _ms(tick), outcome)
                state = stored.state(self.connection, key)
            else:
                if running and schedule.overlap == "cancel_other":
                    for run_id in running:
                        lifecycle.cancel(RunStore(self.connection, run_id))
                self._fire(schedule, tick)
                if age > MISFIRE_GRACE_S:
                    return MAX_SLEEP_S  # a catch-up run: the next tick waits for its end
                running = self._running(key)
        return MAX_SLEEP_S

    def _running(self, schedule: str) -> list[str]:
        """The schedule's runs still running (ended ones are dropped from its set)."""
        run_ids = stored.active_runs(self.connection, schedule)
        if not run_ids:
            return []
        running = stored.still_running(self.connection, run_ids)
        stored.forget_runs(self.connection, schedule, [r for r in run_ids if r not in running])
        return running

    def _fire(self, schedule: Schedule, tick: datetime, *, buffered: bool = False) -> None:
        """Write the run of ``tick`` with its claim, as the leader; nothing if another did."""
        fire(self.connection, self.dags[schedule.dag], schedule, tick, self.token,
             buffered=buffered)  # fmt: skip


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
    values = {**schedule.params}
    asked = dag.params_model.model_fields
    values |= {k: v for k, v in tick_params(schedule, tick).items() if k in asked}
    stored_params = dag.validate_params(values)
    guard = stored.claim_guard(schedule.key, token, _ms(tick), buffered=buffered, force=force)
    how = trigger or f"schedule {schedule.key} @ {tick.isoformat()}"
    made = lifecycle.create_if(
        connection,
        dag.plan,
        stored_params,
        guard,
        tags=[f"schedule:{schedule.name}", *tags],
        trigger=how,
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
            stored.resign(self.scheduler.connection, self.scheduler.token)
        except Exception as exc:
            log.debug("scheduler resign: %s", one_line_error(exc))

    def stop(self) -> None:
        """Stop after the current pass."""
        self._stopped.set()
