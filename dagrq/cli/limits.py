"""`dagrq pools`: pools, node concurrency limits and rate limits, who holds them and who
waits; `dagrq pools set NAME SIZE` resizes a pool at once."""

from __future__ import annotations

from typing import Any

import click

from .common import connect, console, emit_json, errors, json_option, url_option


@click.command()
@click.argument("args", nargs=-1, metavar="| set NAME SIZE | reset NAME")
@json_option
@url_option
@errors
def pools(args: tuple[str, ...], as_json: bool, url: str | None) -> None:
    """List pools (with their size, slots used, holders and waiters), node concurrency limits
    and rate limits in use.

    `dagrq pools set NAME SIZE` sizes a pool (shared by every DAG; a pool never sized has 128
    slots): it takes effect at once, a pool that grew lets its waiters in now. `dagrq pools
    reset NAME` forgets the size.
    """
    from .. import pools as api

    conn, _ = connect(url)
    if args and args[0] in ("set", "reset"):
        want = 3 if args[0] == "set" else 2
        if len(args) != want:
            raise click.UsageError(f"dagrq pools {args[0]} takes NAME{' SIZE' * (want == 3)}")
        size = None if want == 2 else _size(args[2])
        try:
            got = api.set(conn, args[1], size) if size is not None else api.reset(conn, args[1])
        except ValueError as exc:
            raise click.UsageError(str(exc)) from None
        click.echo(f"pool {args[1]}: {got[0]} slots, {got[1]} in use")
        return
    if args:
        raise click.UsageError(f"no such pools command {args[0]!r}: use set or reset")
    found = api.list(conn)
    if as_json:
        emit_json([x.to_dict() for x in found])
        return
    if not found:
        click.echo("no pools or limits in use (`dagrq pools set NAME SIZE` sizes a pool)")
        return
    from rich.table import Table

    table = Table()
    for column in ("limit", "size", "used", "held by", "waiting"):
        table.add_column(column, no_wrap=column in ("limit", "size", "used"))
    for x in found:
        shown = f"{x.size}/{x.period_s}s" if x.kind == "rate" else str(x.size)
        table.add_row(
            f"{x.kind} {x.name}",
            shown + ("" if x.sized else " (default)"),
            str(x.used),
            _who(x.holders),
            _who(x.waiting) if x.waiting else "",
        )
    console().print(table)


def _size(text: str) -> int:
    try:
        size = int(text)
    except ValueError:
        size = -1
    if size < 0:
        raise click.UsageError(f"pool size {text!r} is not a whole number >= 0")
    return size


def _who(holders: list[Any], most: int = 5) -> str:
    shown = ", ".join(f"{h.run_id[:8]}/{h.node}" for h in holders[:most])
    return shown + (f" and {len(holders) - most} more" if len(holders) > most else "")


COMMANDS = (pools,)
