"""`dagrq cancel`, `retry`, `clear`, `mark` and `reconcile`: acting on runs."""

from __future__ import annotations

import json
from typing import Any

import click

from ..model.status import LIVE_RUN_STATES, MARKS
from .common import (
    connect,
    errors,
    known_node,
    run_handle,
    url_option,
)


@click.command()
@click.argument("run_id")
@url_option
@errors
def cancel(run_id: str, url: str | None) -> None:
    """Cancel RUN_ID: queued jobs leave their queues, running ones are stopped."""
    run_ = run_handle(run_id, url)
    before = run_.status().state
    after = run_.cancel()
    if before not in LIVE_RUN_STATES:
        click.echo(f"run {run_id} had already ended ({before}): nothing to cancel")
        return
    click.echo(f"run {run_id} {after.state}")


@click.command()
@click.argument("run_id")
@url_option
@errors
def retry(run_id: str, url: str | None) -> None:
    """Resume RUN_ID: re-run failed, skipped and canceled nodes and their descendants,
    reusing the outputs of the nodes that succeeded. Workers do the work."""
    run_ = run_handle(run_id, url)
    _ended(run_, run_id)
    after = run_.resume()
    redo = [n for n, s in after.nodes.items() if s.state in ("pending", "queued")]
    if not redo:
        click.echo(f"run {run_id} {after.state}: nothing to run again")
        return
    click.echo(f"run {run_id} {after.state}: {len(redo)} nodes to run again")


def _ended(run_: Any, run_id: str) -> None:
    """Refuse a run that is still running, with what to do instead."""
    if run_.status().state in LIVE_RUN_STATES:
        raise click.UsageError(
            f"run {run_id} is still running: wait for it to end (`dagrq status {run_id} "
            f"--watch`) or cancel it first (`dagrq cancel {run_id}`)"
        )


@click.command()
@click.argument("run_id")
@click.argument("node")
@url_option
@errors
def clear(run_id: str, node: str, url: str | None) -> None:
    """Run NODE of the ended RUN_ID again, and every node downstream of it, whatever their
    outcome (Airflow's clear with downstream). Workers do the work."""
    run_ = run_handle(run_id, url)
    _ended(run_, run_id)
    after = run_.clear(known_node(run_, node))
    redo = [n for n, s in after.nodes.items() if s.state in ("pending", "queued")]
    click.echo(f"run {run_id} {after.state}: {len(redo)} nodes to run again from {node}")


@click.command()
@click.argument("run_id")
@click.argument("node")
@click.argument("outcome", type=click.Choice(MARKS))
@click.option("--reason", required=True, help="why (kept as the node's reason and in events)")
@click.option("--output", "output", default="null", help="succeeded: its output, as JSON")
@url_option
@errors
def mark(run_id: str, node: str, outcome: str, reason: str, output: str, url: str | None) -> None:
    """Set NODE's OUTCOME in the ended RUN_ID by hand (succeeded: with --output, else null),
    and run everything downstream of it again with that outcome."""
    run_ = run_handle(run_id, url)
    _ended(run_, run_id)
    try:
        after = run_.mark(known_node(run_, node), outcome, reason, json.loads(output))
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    click.echo(f"run {run_id} {after.state}: {node} marked {outcome}")


@click.command()
@click.argument("run_id")
@url_option
@errors
def purge(run_id: str, url: str | None) -> None:
    """Delete the ended RUN_ID now (its keys, jobs, index entries and stored objects) rather
    than when its TTL runs out."""
    run_ = run_handle(run_id, url)
    _ended(run_, run_id)
    gone = run_.purge()
    click.echo(f"run {run_id} purged: {gone} keys deleted")


@click.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN_ID]...")
@url_option
@click.option(
    "--grace",
    "grace_s",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds a claimed job may wait unstarted (and a map's item count stand still) "
    "before it counts as stuck.",
)
@errors
def reconcile(run_ids: tuple[str, ...], url: str | None, grace_s: float) -> None:
    """Repair stuck runs (default: every run that may still be running): re-drive lost jobs
    and dead workers' nodes, re-deliver cut-short arrivals, end damaged runs with the damage
    named. Workers do this on their own every sixth of their lease; this does it now."""
    from ..cluster import every_shard, for_run
    from ..jobs.reconcile import Reconciler

    conn, _ = connect(url)
    for run_id in run_ids:
        run_handle(run_id, url)  # RunNotFound for a wrong id
    repairs = []
    for shard in every_shard(conn):  # on a cluster, each shard's runs on their shard
        mine = [r for r in run_ids if for_run(conn, r) is shard]
        if run_ids and not mine:
            continue
        reconciler = Reconciler(shard, grace_s=grace_s, lease_margin_s=0)
        repairs += reconciler.pass_(mine or None)
    for repair in repairs:
        click.echo(str(repair))
    click.echo(f"{len(repairs)} repairs")


COMMANDS = (cancel, retry, clear, mark, purge, reconcile)
