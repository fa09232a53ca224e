"""`dagrq cache ls` and `dagrq cache clear`: the cached outputs kept per DAG and node."""

from __future__ import annotations

from datetime import datetime

import click

from .common import connect, console, emit_json, errors, json_option, url_option


@click.group()
def cache() -> None:
    """Cached outputs (docs/caching.md): list them, clear them."""


@cache.command("ls")
@click.argument("dag", required=False)
@json_option
@url_option
@errors
def ls(dag: str | None, as_json: bool, url: str | None) -> None:
    """Entries per DAG and node (of DAG, else every DAG with entries): how many, their bytes,
    the newest and oldest."""
    from ..store.cache import listing

    conn, _ = connect(url)
    found = listing(conn, [dag] if dag else None)
    if as_json:
        emit_json([x.to_dict() for x in found])
        return
    if not found:
        click.echo(f"no cached outputs{f' of DAG {dag}' if dag else ''}")
        return
    from rich.table import Table

    table = Table()
    for column in ("dag", "node", "entries", "bytes", "newest", "oldest"):
        table.add_column(column, no_wrap=True)
    for x in found:
        table.add_row(
            x.dag, x.node, f"{x.entries:,}", f"{x.bytes:,}", _when(x.newest), _when(x.oldest)
        )
    console().print(table)


@cache.command("clear")
@click.argument("dag", required=False)
@click.argument("node", required=False)
@url_option
@errors
def clear(dag: str | None, node: str | None, url: str | None) -> None:
    """Delete the cached outputs of DAG (of its NODE only, when given; without DAG, of every
    DAG): the next runs compute them."""
    from ..store.cache import clear as cleared
    from ..store.cache import listing

    conn, _ = connect(url)
    dags = [dag] if dag else sorted({x.dag for x in listing(conn)})
    n = sum(cleared(conn, d, node) for d in dags)
    click.echo(f"{n} cached outputs of {dag or 'every DAG'}{f'.{node}' if node else ''} deleted")


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


COMMANDS = (cache,)
