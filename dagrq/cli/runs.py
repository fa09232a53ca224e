"""``dagrq runs``, ``result``, ``logs`` and ``server``: finding runs and reading what they did.

Registered on the ``dagrq`` group by :mod:`dagrq.cli`; exit codes as there (docs/cli.md).
"""

from __future__ import annotations

import json
import sys
import time

import click

from ..model.status import RUN_STATES
from .common import (
    connect,
    console,
    emit_json,
    errors,
    json_option,
    print_value,
    run_handle,
    url_option,
)


@click.command()
@click.argument("dag", required=False, metavar="[DAG]")
@click.option("--state", type=click.Choice(RUN_STATES), default=None, help="Only runs in it.")
@click.option("--limit", type=click.IntRange(1), default=20, show_default=True)
@json_option
@url_option
@errors
def runs(dag: str | None, state: str | None, limit: int, as_json: bool, url: str | None) -> None:
    """List runs, newest first: id, DAG, name, state, start, duration, progress, params.

    DAG is a DAG's name, or a PIPELINE (module:attr or file.py:attr) to list its DAG's runs.
    """
    from ..client import Run
    from ..model.shapes import summary_json
    from .view import runs_table

    name = _dag_name(dag) if dag else None
    conn, _ = connect(url)
    found = Run.list(conn, dag=name, state=state, limit=limit)
    if as_json:
        emit_json([summary_json(s) for s in found])
        return
    if not found:
        where = f" of DAG {name!r}" if name else ""
        click.echo(f"no runs{where}{' in state ' + state if state else ''}")
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
        value = run_.result(node)
        if as_json:
            emit_json(value)
        else:
            print_value(console(), node, value)
        return
    status = run_.status()
    children = {p for n in status.nodes.values() for p in n.parents}
    sinks = [n for n in status.nodes if n not in children]
    outputs = {s: run_.result(s) for s in sinks if status.nodes[s].state == "succeeded"}
    if as_json:
        emit_json(outputs)
    else:
        for name, value in outputs.items():
            print_value(console(), name, value)
    if not outputs:
        states = ", ".join(f"{s} {status.nodes[s].state}" for s in sinks)
        click.echo(f"error: run {run_id} has no sink output yet ({states})", err=True)
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
    plan = run_.plan()
    if node is not None and node not in plan.specs:
        raise click.UsageError(
            f"run {run_id} has no node {node!r} (nodes: {', '.join(plan.specs)})"
        )
    for entry in run_.logs(node, attempt=attempt, follow=follow):
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
        else:
            prefix = {"stderr": "! ", "log": f"{entry.level} "}.get(entry.stream, "")
            click.echo(f"{prefix}{entry.line}")


@click.group()
def server() -> None:
    """The embedded Redis server under .dagrq/: start it to keep it running between
    commands, stop it, or see whether it runs. Without `start`, commands share one server
    that stops when the last of them ends."""


@server.command(name="start")
@errors
def server_start() -> None:
    """Start the embedded server (or keep the running one) until `dagrq server stop`."""
    from ..connection import Embedded

    embedded = Embedded()
    embedded.keep()
    click.echo(f"embedded Redis running: {embedded.url} (stop it with `dagrq server stop`)")
    embedded.close()


@server.command(name="stop")
@errors
def server_stop() -> None:
    """Stop the embedded server (its data is written to .dagrq/redis.db first)."""
    from ..connection import Embedded, embedded_running

    if not embedded_running():
        click.echo("embedded Redis is not running")
        return
    embedded = Embedded()
    embedded.keep(False)
    clients = embedded.clients() - 1
    embedded.close(force=True)
    note = f" ({clients} clients were connected)" if clients else ""
    click.echo(f"embedded Redis stopped{note}")


@server.command(name="status")
@errors
def server_status() -> None:
    """Say whether the embedded server runs; exit 0 when it does, 3 when it does not."""
    from ..connection import Embedded, embedded_running

    if not embedded_running():
        click.echo("embedded Redis is not running")
        sys.exit(3)
    embedded = Embedded()
    kept = "kept (`dagrq server start`)" if embedded.kept else "stops with its last client"
    click.echo(
        f"embedded Redis running: {embedded.url}, pid {embedded.client.pid}, "
        f"{embedded.clients() - 1} other clients, {kept}"
    )
    embedded.close()


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=8700, show_default=True, type=click.IntRange(0, 65535))
@click.option(
    "--token",
    envvar="DAGRQ_UI_TOKEN",
    default=None,
    help="Required of every request when --host is not loopback [env: DAGRQ_UI_TOKEN].",
)
@url_option
@errors
def ui(host: str, port: int, token: str | None, url: str | None) -> None:
    """A live web view of runs: runs list, each run's DAG with live node states, logs,
    cancel and resume (docs/ui.md). Loopback only unless --token is given."""
    import uvicorn

    from ..web.app import LOOPBACK, check_bind, create_app

    check_bind(host, token)
    conn, _ = connect(url)
    app = create_app(conn, token, require_token=host not in LOOPBACK)
    shown = f"http://{host}:{port}/" + ("?token=..." if host not in LOOPBACK else "")
    click.echo(f"dagrq ui on {shown} (Ctrl-C to stop)", err=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")


COMMANDS = (runs, result, logs, server, ui)
