"""`dagrq status`, `why`, `events`, `runs`, `result` and `logs`: finding runs and reading what
they did."""

from __future__ import annotations

import json
import sys
import time
from typing import TYPE_CHECKING

import click

from ..model.status import RUN_FILTERS, SUCCESS_STATES
from .common import (
    connect,
    console,
    emit_json,
    errors,
    json_option,
    known_node,
    print_value,
    run_handle,
    url_option,
)

if TYPE_CHECKING:
    pass


@click.command()
@click.argument("run_id")
@click.argument("node", required=False)
@url_option
@click.option("--watch", is_flag=True, help="Follow the run live until it ends, then show it.")
@json_option
@errors
def status(run_id: str, node: str | None, url: str | None, watch: bool, as_json: bool) -> None:
    """Show RUN_ID's nodes: state, attempts, queue, timings, errors, what they wait for; with
    NODE, that node in full, its traceback included.

    Exit 0 when the run succeeded, 1 when it failed or was canceled, 3 while it runs.
    """
    from ..model.shapes import node_json, status_json
    from .progress import follow
    from .view import STATUS_EXIT, print_node, print_status

    run_ = run_handle(run_id, url)
    if watch:
        follow(run_, console())
    current = run_.status()
    if node is not None and node not in current.nodes:
        raise click.UsageError(
            f"run {run_id} has no node {node!r} (nodes: {', '.join(current.nodes)})"
        )
    if as_json:
        emit_json(node_json(current.nodes[node]) if node else status_json(current))
    elif node is not None:
        print_node(console(), node, current.nodes[node])
    else:
        print_status(console(), current)
    sys.exit(STATUS_EXIT.get(current.state, 1))


@click.command()
@click.argument("run_id")
@click.argument("node")
@url_option
@json_option
@errors
def why(run_id: str, node: str, url: str | None, as_json: bool) -> None:
    """Explain NODE in RUN_ID: its rule, which parents arrived how, what it waits for."""
    from ..model.shapes import explanation_json
    from .view import print_why

    run_ = run_handle(run_id, url)
    nodes = run_.status().nodes  # known without the plan: a damaged run is still explained
    if node not in nodes:
        raise click.UsageError(f"run {run_id} has no node {node!r} (nodes: {', '.join(nodes)})")
    if as_json:
        emit_json(explanation_json(run_.explain(node)))
    else:
        print_why(console(), run_.explain(node))


@click.command()
@click.argument("run_id")
@url_option
@click.option("--no-follow", is_flag=True, help="Print what is stored and stop.")
@errors
def events(run_id: str, url: str | None, no_follow: bool) -> None:
    """Print RUN_ID's state changes as JSON lines, following until the run ends (``ts`` in
    ISO 8601 UTC, as every time the CLI prints as JSON)."""
    from ..model.shapes import iso

    run_ = run_handle(run_id, url)
    for event in run_.events(follow=not no_follow):
        if "ts" in event:
            event = {**event, "ts": iso(float(event["ts"]))}
        click.echo(json.dumps(event))


@click.command()
@click.argument("dag", required=False, metavar="[DAG]")
@click.option(
    "--state",
    type=click.Choice(RUN_FILTERS),
    default=None,
    help="Only runs in it (waiting: running, with a node waiting).",
)
@click.option("--tag", default=None, help="Only runs with this tag.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@json_option
@url_option
@errors
def runs(
    dag: str | None, state: str | None, tag: str | None, limit: int, as_json: bool, url: str | None
) -> None:
    """List runs, newest first: id, DAG, name and tags, state, start, duration, progress,
    params.

    DAG is a DAG's name, or a PIPELINE (module:attr or file.py:attr) to list its DAG's runs.
    """
    from ..client import Run
    from ..model.shapes import summary_json
    from .view import runs_table

    name = _dag_name(dag) if dag else None
    conn, _ = connect(url)
    found = Run.list(conn, dag=name, state=state, tag=tag, limit=limit)
    if as_json:
        emit_json([summary_json(s) for s in found])
        return
    if not found:
        where = f" of DAG {name!r}" if name else ""
        tagged = f" tagged {tag!r}" if tag else ""
        click.echo(f"no runs{where}{' in state ' + state if state else ''}{tagged}")
        return
    console().print(runs_table(found))


def _dag_name(dag: str) -> str:
    """A DAG name from a name or a pipeline address."""
    if ":" in dag or dag.endswith(".py"):
        from .common import load

        return load(dag).name
    return dag


@click.command()
@click.argument("run_id")
@click.argument("node", required=False)
@json_option
@url_option
@errors
def result(run_id: str, node: str | None, as_json: bool, url: str | None) -> None:
    """Print RUN_ID's output of NODE (default: of every sink that has one).

    With --json: the output itself as JSON with NODE, else ``{sink: output}``. Exit 1 when
    the node has no output (not finished, failed, skipped or expired).
    """
    run_ = run_handle(run_id, url)
    if node is not None:
        value = run_.result(known_node(run_, node))
        if as_json:
            emit_json(value)
        else:
            print_value(console(), node, value)
        return
    status = run_.status()
    children = {p for n in status.nodes.values() for p in n.parents}
    sinks = [n for n in status.nodes if n not in children]
    outputs = {s: run_.result(s) for s in sinks if status.nodes[s].state in SUCCESS_STATES}
    if as_json:
        emit_json(outputs)
    else:
        for name, value in outputs.items():
            print_value(console(), name, value)
    if not outputs:
        states = ", ".join(f"{s} {status.nodes[s].state}" for s in sinks)
        when = "yet: it is still running" if not status.done else f"(it ended {status.state})"
        click.echo(f"error: run {run_id} has no sink output {when}; sinks: {states}", err=True)
        sys.exit(1)


@click.command()
@click.argument("run_id")
@click.argument("node", required=False)
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the run ends.")
@click.option("--attempt", type=click.IntRange(1), default=None, help="Only this attempt.")
@json_option
@url_option
@errors
def logs(
    run_id: str,
    node: str | None,
    follow: bool,
    attempt: int | None,
    as_json: bool,
    url: str | None,
) -> None:
    """Print what NODE (default: every node) of RUN_ID printed and logged, per attempt, with
    the host and pid it ran on. With --json, one JSON object per line."""
    from ..model.shapes import iso

    run_ = run_handle(run_id, url)
    status = run_.status()
    if node is not None:
        known_node(run_, node)
        tried = status.nodes[node].attempts
        if attempt is not None and attempt > tried:
            raise click.UsageError(
                f"node {node!r} of run {run_id} has {tried} attempt{'s' * (tried != 1)}: "
                f"no attempt {attempt}"
            )
    shown = 0
    for entry in run_.logs(node, attempt=attempt, follow=follow):
        shown += 1
        if as_json:
            fields = {"node": entry.node, "attempt": entry.attempt, "item": entry.item}
            fields |= {"stream": entry.stream, "level": entry.level, "line": entry.line}
            click.echo(json.dumps(fields | {"ts": iso(entry.ts)}, default=str))
        elif entry.stream == "meta":
            item = f" item {entry.item}" if entry.item is not None else ""
            click.echo(
                f"── {entry.node}{item} · attempt {entry.attempt} · {entry.line} · "
                f"{time.strftime('%H:%M:%S', time.localtime(entry.ts))}"
            )
        elif entry.stream == "error":
            click.echo(f"✗ attempt {entry.attempt} failed: {entry.line}")
        else:
            prefix = {"stderr": "! ", "log": f"{entry.level} "}.get(entry.stream, "")
            click.echo(f"{prefix}{entry.line}")
    if not shown:
        what = f"node {node!r}" if node is not None else "no node"
        when = f" in attempt {attempt}" if attempt is not None else ""
        click.echo(f"{what} of run {run_id} printed and logged nothing{when}", err=True)


COMMANDS = (status, why, events, runs, result, logs)
