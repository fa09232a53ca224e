"""Backfills: the ticks of a past range, run once each, a few at a time, as one unit.

:func:`plan_backfill` decides, per tick of a schedule in ``[start, end]``, whether it runs:
a tick with no run (or one that was skipped or missed) runs; one whose run is still running
never runs twice; one that has a run follows ``reprocess``: ``none`` keeps every existing
run, ``failed`` (the default) runs again the ticks whose run failed, was canceled or is gone,
``all`` runs every tick again. :func:`run_backfill` submits the chosen ticks oldest first,
at most ``max_active`` running at once, each run tagged ``backfill:<id>`` and claimed under
its tick as a scheduled run is (so a backfill and the scheduler never make two runs of one
tick at once); ``dagrq backfill cancel ID`` stops it and cancels its runs.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from ..errors import DAGError
from ..model.dag import DAG
from ..model.schedules import Schedule
from ..store import lifecycle
from ..store import schedules as stored
from ..store.runs import RunStore
from .scheduling import fire, tick_ms

Reprocess = Literal["none", "failed", "all"]
#: runs of one backfill running at once, unless ``max_active`` says otherwise
DEFAULT_MAX_ACTIVE = 16


@dataclass(frozen=True)
class Tick:
    """One tick of a backfill: its time, the run it has (if any), and what the backfill does."""

    at: datetime
    existing: str | None
    action: str  # "run", "run again", "keep", "running"


def pick_schedule(dag: DAG, name: str | None) -> Schedule:
    """The schedule a backfill follows: ``name``, or the DAG's only one.

    Raises:
        DAGError: the DAG has no schedule, several and no ``name``, or none of that name.
    """
    found = {s.name: s for s in dag.schedules}
    if not found:
        raise DAGError(f"DAG {dag.name!r} has no schedule to backfill: declare one")
    if name is None:
        if len(found) > 1:
            raise DAGError(
                f"DAG {dag.name!r} has {len(found)} schedules: pick one with --schedule "
                f"({', '.join(found)})"
            )
        return next(iter(found.values()))
    if name not in found:
        raise DAGError(f"DAG {dag.name!r} has no schedule {name!r} (it has {', '.join(found)})")
    return found[name]


def plan_backfill(
    connection: Any, schedule: Schedule, start: datetime, end: datetime, reprocess: Reprocess
) -> list[Tick]:
    """What a backfill of ``[start, end]`` does with each tick (see the module docstring)."""
    from datetime import timedelta

    ticks = list(schedule.ticks(start - timedelta(microseconds=1), end))
    claims = stored.claimed(connection, schedule.key, [tick_ms(t) for t in ticks])
    runs = [c for c in claims if c is not None and len(c) == 32]
    running = set(stored.still_running(connection, runs)) if runs else set()
    states = _states(connection, runs)
    out = []
    for tick, claim in zip(ticks, claims, strict=True):
        run_id = claim if claim is not None and len(claim) == 32 else None
        if run_id is None:
            action = "run"
        elif run_id in running:
            action = "running"
        elif reprocess == "all" or (reprocess == "failed" and states[run_id] != "succeeded"):
            action = "run again"
        else:
            action = "keep"
        out.append(Tick(tick, run_id, action))
    return out


def _states(connection: Any, run_ids: Sequence[str]) -> dict[str, str]:
    found = stored.run_states(connection, run_ids)
    return {r: s or "gone" for r, s in zip(run_ids, found, strict=True)}


def run_backfill(
    connection: Any,
    dag: DAG,
    schedule: Schedule,
    ticks: Sequence[Tick],
    *,
    max_active: int = DEFAULT_MAX_ACTIVE,
    said: Callable[[str], None] = lambda text: None,
    poll_s: float = 0.2,
) -> tuple[str, dict[str, str]]:
    """Submit the ticks to run, oldest first, at most ``max_active`` running at once, until
    every run ended (or the backfill is canceled); ``(backfill id, {run id: state})``."""
    todo = [t for t in ticks if t.action in ("run", "run again")]
    backfill_id = uuid.uuid4().hex[:12]
    stored.start_backfill(connection, backfill_id, schedule, [t.at for t in todo])
    said(f"backfill {backfill_id}: {len(todo)} ticks of {schedule.key}")
    running: list[str] = []
    ended: dict[str, str] = {}
    while todo or running:
        if stored.backfill_state(connection, backfill_id) == "canceled":
            for run_id in running:
                lifecycle.cancel(RunStore(connection, run_id))
            said(f"backfill {backfill_id} canceled: {len(todo)} ticks not run")
            return backfill_id, ended | dict.fromkeys(running, "canceled")
        while todo and len(running) < max_active:
            tick = todo.pop(0)
            made = fire(
                connection, dag, schedule, tick.at, "",
                force=tick.action == "run again",
                trigger=f"backfill {backfill_id} @ {tick.at.isoformat()}",
                tags=[f"backfill:{backfill_id}"],
            )  # fmt: skip
            if made is None:
                said(f"{tick.at.isoformat()}: claimed meanwhile, not run")
                continue
            stored.add_backfill_run(connection, backfill_id, made)
            running.append(made)
            said(f"{tick.at.isoformat()}: run {made}")
        still = set(stored.still_running(connection, running)) if running else set()
        for run_id in [r for r in running if r not in still]:
            ended[run_id] = _states(connection, [run_id])[run_id]
            said(f"run {run_id} {ended[run_id]}")
        running = [r for r in running if r in still]
        if todo or running:
            time.sleep(poll_s)
    stored.end_backfill(connection, backfill_id, "done")
    return backfill_id, ended
