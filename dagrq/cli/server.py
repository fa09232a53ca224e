"""`dagrq server` (the embedded Redis server under .dagrq/), `dagrq ui` (the web view) and
`dagrq metrics` (the Prometheus exporter)."""

from __future__ import annotations

import sys

import click

from .common import (
    connect,
    errors,
    url_option,
)


@click.group()
def server() -> None:
    """The embedded Redis server under .dagrq/: start it to keep it running between
    commands, stop it, or see whether it runs. Without `start`, commands share one server
    that stops when the last of them ends."""


@server.command(name="start")
@errors
def server_start() -> None:
    """Start the embedded server (or keep the running one) until `dagrq server stop`."""
    from ..embedded import Embedded

    embedded = Embedded()
    embedded.keep()
    click.echo(f"embedded Redis running: {embedded.url} (stop it with `dagrq server stop`)")
    embedded.close()


@server.command(name="stop")
@errors
def server_stop() -> None:
    """Stop the embedded server (its data is written to .dagrq/redis.db first)."""
    from ..embedded import Embedded, embedded_running

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
    from ..embedded import Embedded, embedded_running

    if not embedded_running():
        click.echo("embedded Redis is not running")
        sys.exit(3)
    embedded = Embedded()
    kept = "kept (`dagrq server start`)" if embedded.kept else "stops with its last client"
    click.echo(
        f"embedded Redis running: {embedded.url}, pid {embedded.pid}, "
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
    """A live web view: DAGs with their recent runs, each DAG's grid, runs with filters,
    each run's graph and timeline with live states and logs, node actions (clear, mark,
    signal), cancel and resume, workers (docs/ui.md). Loopback only unless --token is given."""
    import uvicorn

    from ..web.access import LOOPBACK, check_bind
    from ..web.app import create_app

    check_bind(host, token)
    conn, _ = connect(url)
    app = create_app(conn, token, require_token=host not in LOOPBACK)
    shown = f"http://{host}:{port}/" + ("?token=..." if host not in LOOPBACK else "")
    click.echo(f"dagrq ui on {shown} (Ctrl-C to stop)", err=True)
    # open pages hold event streams for as long as they are open: stop without waiting on them
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=2)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to bind (0.0.0.0 for a Prometheus on another host).",
)
@click.option("--port", default=9808, show_default=True, type=click.IntRange(0, 65535))
@url_option
@errors
def metrics(host: str, port: int, url: str | None) -> None:
    """Serve the deployment's Prometheus metrics (dagrq_*) at http://HOST:PORT/metrics,
    read from Redis on each scrape (docs/observability.md). `dagrq ui` serves the same at
    /metrics."""
    import time

    from ..metrics import serve

    conn, _ = connect(url)
    try:
        serve(conn, host, port)
    except OSError as exc:
        raise click.UsageError(f"cannot serve metrics on {host}:{port}: {exc.strerror}") from exc
    click.echo(f"dagrq metrics on http://{host}:{port}/metrics (Ctrl-C to stop)", err=True)
    while True:
        time.sleep(3600)


COMMANDS = (server, ui, metrics)
