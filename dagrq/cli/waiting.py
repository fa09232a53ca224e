"""`dagrq signal` and `dagrq emit`: values for waiting nodes, events for triggered DAGs
(docs/waits.md)."""

from __future__ import annotations

import json
from typing import Any

import click

from .common import connect, errors, run_handle, url_option


def _json(value: str, what: str) -> Any:
    try:
        return json.loads(value)
    except json.JSONDecodeError as exc:
        raise click.BadParameter(
            f"{value!r} is not JSON ({exc.msg}); quote text as '\"yes\"'", param_hint=what
        ) from None


@click.command()
@click.argument("run_id")
@click.argument("node")
@click.option("--value", "value", required=True, help="The value, as JSON: '{\"ok\": true}'.")
@click.option(
    "--wait",
    "wait_s",
    type=float,
    default=10.0,
    show_default=True,
    help="Seconds to wait for a worker's answer.",
)
@url_option
@errors
def signal(run_id: str, node: str, value: str, wait_s: float, url: str | None) -> None:
    """Send a value to the wait node NODE of RUN_ID (``dag.wait``): the first value its type
    accepts ends it; a refused one (exit 2, with the type's message) leaves it waiting."""
    data = _json(value, "--value")
    answer = run_handle(run_id, url).signal(node, data, wait_s=wait_s)
    if answer == "accepted":
        click.echo(f"run {run_id}: node {node} accepted the value and ended with it")
    elif answer == "kept":
        click.echo(
            f"run {run_id}: node {node} is not waiting yet; the value is kept and checked "
            "when it starts waiting"
        )
    else:
        click.echo(
            f"run {run_id}: signal sent; no worker answered within {wait_s:g} s (a worker "
            f"serving the DAG checks it when it runs node {node}; see dagrq status {run_id})"
        )


@click.command()
@click.argument("name")
@click.option("--data", "data", default="null", help="The event's data, as JSON.")
@click.option("--key", "key", default=None, help="A dedup key: the same key emits once.")
@url_option
@errors
def emit(name: str, data: str, key: str | None, url: str | None) -> None:
    """Emit event NAME: every DAG subscribed to it (``triggers=[on_event(NAME)]``) starts one
    run, whichever worker reads it; with --key, once per key (7 days)."""
    from ..model.events import check_name
    from ..store.waits import emit as emitted

    check_name(name)
    payload = _json(data, "--data")
    conn, _ = connect(url)
    event_id, new = emitted(conn, name, payload, key)
    said = "emitted" if new else f"already emitted under key {key!r}"
    click.echo(f"event {name} {said}: {event_id}")


COMMANDS = (signal, emit)
