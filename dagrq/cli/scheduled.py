"""`dagrq schedules`, `backfill` and `scheduler`: seeing and steering schedules, filling a
past range, a scheduler apart from the workers."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import click

from ..errors import DAGError
from .common import connect, console, emit_json, errors, json_option, load, url_option


@click.command(context_settings={"ignore_unknown_options": False})
@click.argument("args", nargs=-1, metavar="[PIPELINE] | pause NAME | resume NAME")
@json_option
@url_option
@errors
def schedules(args: tuple[str, ...], as_json: bool, url: str | None) -> None:
    """List schedules (a PIPELINE's, else every one a worker has served): each with its last
    tick, that tick's run and state, the next 3 fire times in its zone, paused or not.

    `dagrq schedules pause NAME` and `resume NAME` stop and restart one (NAME is DAG:NAME, or
    NAME alone when only one DAG has a schedule of that name); ticks that fall due while it is
    paused are not fired later.
    """
    from ..store import schedules as stored

    conn, _ = connect(url)
    if args and args[0] in ("pause", "resume"):
        if len(args) != 2:
            raise click.UsageError(f"dagrq schedules {args[0]} takes one NAME (DAG:NAME)")
        key = _schedule_key(stored.known(conn), args[1])
        stored.set_paused(conn, key, args[0] == "pause")
        click.echo(f"schedule {key} {'paused' if args[0] == 'pause' else 'resumed'}")
        return
    if len(args) > 1:
        raise click.UsageError("dagrq schedules takes at most one PIPELINE")
    found = _listed(conn, args[0] if args else None)
    if as_json:
        emit_json(found)
        return
    if not found:
        click.echo("no schedules (a worker lists those of the DAGs it serves when it leads)")
        return
    from rich.table import Table

    table = Table()
    for column in ("schedule", "when", "overlap", "paused", "last tick", "run", "next"):
        table.add_column(column, no_wrap=column != "next")
    for entry in found:
        table.add_row(
            entry["schedule"],
            entry["spec"],
            entry["overlap"],
            "yes" if entry["paused"] else "",
            entry["last_tick"] or "",
            f"{entry['last_run'] or ''} {entry['last_state'] or ''}".strip(),
            "\n".join(entry["next"]),
        )
    console().print(table)


def _schedule_key(known: dict[str, dict[str, Any]], name: str) -> str:
    """``DAG:NAME`` for ``name`` (either form)."""
    if name in known:
        return name
    matches = [k for k in known if k.split(":", 1)[1] == name]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise click.UsageError(f"schedule {name!r} is in several DAGs: say {' or '.join(matches)}")
    listed = ", ".join(known) or "none yet"
    raise click.UsageError(f"no schedule {name!r} (known: {listed})")


def _listed(conn: Any, pipeline: str | None) -> list[dict[str, Any]]:
    """The schedules to list (a PIPELINE's, else every one known), the JSON shape."""
    from ..store import schedules as stored

    declared = list(load(pipeline).schedules) if pipeline else stored.rebuilt(conn)
    return stored.listing(conn, declared)


@click.command()
@click.argument("args", nargs=-1, metavar="PIPELINE | cancel ID | list")
@click.option(
    "--from", "start", default=None, help="First tick (ISO 8601; no zone: the schedule's)."
)
@click.option("--to", "end", default=None, help="Last tick (ISO 8601; no zone: the schedule's).")
@click.option("--schedule", "schedule_name", default=None, help="The schedule (if several).")
@click.option("--max-active", type=click.IntRange(1), default=16, show_default=True,
              help="Runs of the backfill running at once.")  # fmt: skip
@click.option(
    "--dry-run", is_flag=True, help="List the ticks and what would happen; write nothing."
)
@click.option(
    "--reprocess",
    type=click.Choice(["none", "failed", "all"]),
    default="failed",
    show_default=True,
    help="Ticks that have a run: keep it (none), run again those that failed (failed), or all.",
)
@json_option
@url_option
@errors
def backfill(
    args: tuple[str, ...],
    start: str | None,
    end: str | None,
    schedule_name: str | None,
    max_active: int,
    dry_run: bool,
    reprocess: str,
    as_json: bool,
    url: str | None,
) -> None:
    """Run the ticks of a past range of PIPELINE's schedule, oldest first, at most
    --max-active at once, and wait for them (workers elsewhere run them). Exit 0 when every
    run succeeded, 1 otherwise. `dagrq backfill list` lists backfills; `dagrq backfill cancel
    ID` stops one and cancels its runs. Its runs are tagged backfill:ID (`dagrq runs --tag`).
    """
    from ..store import schedules as stored

    conn, _ = connect(url)
    if args and args[0] in ("cancel", "list"):
        if args[0] == "list":
            emit_json(stored.backfills(conn)) if as_json else _print_backfills(conn)
            return
        if len(args) != 2 or stored.backfill_state(conn, args[1]) is None:
            raise click.UsageError("dagrq backfill cancel takes the ID of a backfill")
        stored.end_backfill(conn, args[1], "canceled")
        click.echo(f"backfill {args[1]} canceled (its runner cancels its runs)")
        return
    if len(args) != 1 or start is None or end is None:
        raise click.UsageError("dagrq backfill PIPELINE --from T --to T (or: list, cancel ID)")
    _backfill(conn, args[0], start, end, schedule_name, max_active, dry_run, reprocess, as_json)


def _print_backfills(conn: Any) -> None:
    from ..store import schedules as stored

    for b in stored.backfills(conn):
        click.echo(f"{b['id']}  {b['schedule']}  {b['state']}  {b['from']} .. {b['to']}  "
                   f"{len(b['runs'])}/{b['ticks']} runs")  # fmt: skip


def _moment(text: str, what: str, zone: Any) -> datetime:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        why = f"--{what} {text!r} is not an ISO 8601 time (2026-11-28T03:00)"
        raise click.UsageError(why) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def _backfill(
    conn: Any,
    pipeline: str,
    start: str,
    end: str,
    schedule_name: str | None,
    max_active: int,
    dry_run: bool,
    reprocess: Any,
    as_json: bool,
) -> None:
    from ..workers.backfill import pick_schedule, plan_backfill, run_backfill

    dag = load(pipeline)
    schedule = pick_schedule(dag, schedule_name)
    first, last = _moment(start, "from", schedule.zone), _moment(end, "to", schedule.zone)
    if last < first:
        raise click.UsageError(f"--to {end} is before --from {start}")
    ticks = plan_backfill(conn, schedule, first, last, reprocess)
    if dry_run:
        rows = [{"tick": t.at.isoformat(), "run": t.existing, "action": t.action} for t in ticks]
        if as_json:
            emit_json(rows)
        else:
            for row in rows:
                click.echo(
                    f"{row['tick']}  {row['action']}" + (f" ({row['run']})" * bool(row["run"]))
                )
            todo = sum(1 for t in ticks if t.action in ("run", "run again"))
            click.echo(f"{len(ticks)} ticks, {todo} to run (--dry-run: nothing written)")
        return
    say = (lambda text: None) if as_json else click.echo
    backfill_id, ended = run_backfill(conn, dag, schedule, ticks, max_active=max_active, said=say)
    if as_json:
        emit_json({"id": backfill_id, "runs": ended})
    failed = [r for r, state in ended.items() if state != "succeeded"]
    if failed:
        raise SystemExit(1)


@click.command()
@click.argument("pipelines", nargs=-1, required=True, metavar="PIPELINE...")
@url_option
@errors
def scheduler(pipelines: tuple[str, ...], url: str | None) -> None:
    """Fire the schedules of PIPELINE's DAGs, as one more candidate leader (every `dagrq
    worker` is one too; use this to schedule from a process apart). Runs until stopped."""
    import signal
    import threading

    from ..connection import connect as connect_url
    from ..workers.scheduling import SchedulerThread

    dags = [load(p) for p in pipelines]
    if not any(d.schedules for d in dags):
        raise DAGError(f"no schedule in {', '.join(pipelines)}: declare one (dag.schedule)")
    _, resolved = connect(url)
    thread = SchedulerThread(lambda: connect_url(resolved), dags)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread.start()
    click.echo(f"scheduler {thread.scheduler.token}: {sum(len(d.schedules) for d in dags)} "
               "schedules", err=True)  # fmt: skip
    stop.wait()
    thread.stop()
    thread.join(timeout=5)


COMMANDS = (schedules, backfill, scheduler)
