"""Schedules declared on a DAG: the :class:`Scheduling` mixin of :class:`dagrq.DAG`
(``dag.schedule(...)``); what a schedule means is :mod:`dagrq.model.schedules`'."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from .schedules import Overlap, Schedule, make_schedule


class Scheduling:
    """``dag.schedule(...)`` and ``dag.schedules``; the DAG keeps ``name`` and
    ``_schedules``."""

    name: str
    _schedules: list[Schedule]

    def schedule(
        self,
        cron: str | None = None,
        *,
        every: timedelta | None = None,
        params: Mapping[str, Any] | None = None,
        name: str | None = None,
        timezone: str = "UTC",
        jitter: timedelta | None = None,
        overlap: Overlap = "skip",
        catchup: bool | timedelta = False,
        start: datetime | None = None,
        end: datetime | None = None,
    ) -> Schedule:
        """Start a run of this DAG at every tick of ``cron`` (5 fields, or 6 with seconds
        first) or every ``every``, in ``timezone``, with run parameters ``params`` (and the
        tick's ``logical_time``, ``interval_start``, ``interval_end`` for the nodes that ask).
        ``jitter`` delays each tick by up to that much; ``overlap`` says what a tick does while
        the schedule's previous run still runs (``skip`` it, ``buffer_one``: run once after,
        ``allow``, ``cancel_other``); ``catchup`` how far back missed ticks still fire
        (False: the misfire grace, 60 s; True: all); ``start``/``end`` bound the ticks.
        Every ``dagrq worker`` serving the DAG may fire it (one leader at a time). See
        docs/schedules.md.

        Raises:
            DAGError: one line naming the schedule and what is wrong (a bad cron field, zone,
                overlap, a second schedule of the same name).
        """
        made = make_schedule(
            self.name,
            {s.name for s in self._schedules},
            cron=cron,
            every=every,
            params=dict(params or {}),
            name=name,
            timezone=timezone,
            jitter=jitter,
            overlap=overlap,
            catchup=catchup,
            start=start,
            end=end,
        )
        self._schedules.append(made)
        return made

    @property
    def schedules(self) -> tuple[Schedule, ...]:
        """The DAG's schedules, in declaration order."""
        return tuple(self._schedules)
