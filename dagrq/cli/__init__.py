"""The ``dagrq`` command: thin click commands that parse, delegate and map errors to exit codes.

Exit codes: 0 success, 1 the run failed, 2 usage or validation error (one line, no traceback).
"""

from __future__ import annotations

import json
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import RunTimeout
from ..model.dag import DAG
from .common import (
    connect,
    console,
    emit_json,
    errors,
    json_option,
    load,
    print_value,
    read_params,
    run_handle,
    run_options,
    url_option,
)
from .runs import COMMANDS

#: `dagrq run`'s exit code when --timeout ran out
TIMEOUT_EXIT = 4

if TYPE_CHECKING:  # imported where used: validate, plan and dot need neither Redis nor rich
    from rich.console import Console

    from ..client import Run
    from ..workers.processes import Processes


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dagrq")
def main() -> None:
    """dagrq: declarative DAG workflows on RQ and Redis."""


for _command in COMMANDS:
    main.add_command(_command)


@main.command()
@click.argument("pipeline")
@json_option
@errors
def validate(pipeline: str, as_json: bool) -> None:
    """Validate PIPELINE (module:attr or file.py:attr) and print a summary."""
    from ..model.preflight import abridged

    dag = load(pipeline)
    graph = dag.graph
    if as_json:
        fields = dag.params_model.model_fields
        emit_json(
            {
                "dag": dag.name,
                "ok": True,
                "version": dag.plan_hash,
                "nodes": list(dag.specs),
                "edges": [list(e) for e in graph.edges],
                "joins": {j: list(dag.specs[j].parents) for j in dag.joins},
                "queues": list(dag.queues),
                "params": {
                    k: {
                        "required": f.is_required(),
                        "default": None if f.is_required() else f.default,
                    }
                    for k, f in fields.items()
                },
            }
        )
        return
    click.echo(f"DAG {dag.name}: OK")
    click.echo(f"  nodes  {graph.number_of_nodes()}: {abridged(list(dag.specs), ', ')}")
    click.echo(f"  edges  {graph.number_of_edges()}")
    joins = abridged([f"{j} ({len(dag.specs[j].parents)} in)" for j in dag.joins], ", ") or "none"
    click.echo(f"  joins  {len(dag.joins)}: {joins}")
    click.echo(f"  queues {', '.join(dag.queues)}")
    params = dag.params_model.model_fields
    shown = ", ".join(
        f"{k}{'' if f.is_required() else '=' + repr(f.default)}" for k, f in params.items()
    )
    click.echo(f"  params {shown or 'none'}")


def _default(field: Any) -> Any:
    return None if field.is_required() else field.default


@main.command()
@click.argument("pipeline")
@run_options
@url_option
@errors
def submit(
    pipeline: str,
    params: tuple[str, ...],
    params_file: str | None,
    run_name: str | None,
    tags: tuple[str, ...],
    url: str | None,
) -> None:
    """Enqueue one run of PIPELINE and print its run id; workers do the rest."""
    dag = load(pipeline)
    values = dag.validate_params(read_params(params, params_file), from_strings=True)
    conn, _ = connect(url)
    run = dag.submit(conn, run_name=run_name, run_tags=tags, **values)
    click.echo(run.id)


@main.command()
@click.argument("pipelines", nargs=-1, required=True, metavar="PIPELINE...")
@url_option
@click.option(
    "-c",
    "--concurrency",
    type=click.IntRange(min=1),
    default=None,
    envvar="DAGRQ_CONCURRENCY",
    help="Worker processes to keep running [default: the CPUs this process may use; "
    "env DAGRQ_CONCURRENCY].",
)
@click.option(
    "--isolate",
    is_flag=True,
    help="Run each node in a fresh forked process (RQ's Worker), for untrusted or leaky code; "
    "several times slower per node than the default, which runs nodes in the pool's "
    "long-lived processes.",
)
@click.option(
    "--max-jobs-per-process",
    "max_jobs",
    type=click.IntRange(min=1),
    default=None,
    help="Replace a process after it ran this many jobs (bounds memory growth from leaky "
    "nodes, as Celery's max_tasks_per_child) [default: never].",
)
@click.option(
    "--drain-timeout",
    "drain_s",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="On SIGTERM, seconds running nodes may take to finish before they are stopped and "
    "put back on their queues (no retry spent). A second SIGTERM or Ctrl-C stops at once.",
)
@click.option(
    "--log-level",
    default=None,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    help="The worker's own log lines, on stderr [default: $DAGRQ_LOG, else INFO]. Nodes' "
    "output goes to their logs (`dagrq logs`).",
)
@click.option("--burst", is_flag=True, help="Exit when the queues are empty.")
@click.option("--queue", "queues", multiple=True, help="Listen only on this queue; repeatable.")
@click.option("--name", default=None, help="Prefix of the RQ worker names [default: host.pid].")
@click.option(
    "--lease",
    "lease_s",
    type=click.IntRange(min=5),
    default=60,
    show_default=True,
    help="Seconds without a heartbeat after which a running node's worker is presumed lost "
    "(its node is then retried or failed by its retry= rule); renewed every third of it; "
    "at least 5.",
)
@click.option(
    "--worker-class",
    type=click.Choice(["fork", "simple"]),
    default=None,
    hidden=True,
    help="Deprecated: fork is --isolate; simple is the default.",
)
@errors
def worker(
    pipelines: tuple[str, ...],
    url: str | None,
    concurrency: int | None,
    isolate: bool,
    max_jobs: int | None,
    drain_s: float,
    log_level: str | None,
    burst: bool,
    queues: tuple[str, ...],
    name: str | None,
    lease_s: int,
    worker_class: str | None,
) -> None:
    """Run a supervised pool of worker processes for the PIPELINEs' queues (on any machine
    that reaches Redis).

    Each process runs nodes in-process and is replaced at once if it dies; its node is then
    retried or failed by its rule. A node past its timeout= is stopped, even when blocked in
    C (its process is killed). Processes wait for Redis and ride out restarts, failovers and
    pauses of the server. SIGTERM drains: running nodes finish (up to --drain-timeout), no
    new ones start.
    """
    from functools import partial

    from ..connection import connect as connect_url
    from ..connection import mask_url
    from ..workers.pool import PoolSettings, default_concurrency, run_pool

    if worker_class is not None:
        click.echo("warning: --worker-class is deprecated: use --isolate for fork", err=True)
        isolate = isolate or worker_class == "fork"
    dags = _load_many(pipelines)
    every = [q for dag in dags for q in dag.queues]
    unknown = sorted(set(queues) - set(every))
    if unknown:
        raise click.UsageError(
            f"--queue {unknown[0]!r} is not a queue of {_names(dags)} (queues: {', '.join(every)})"
        )
    _conn, resolved = connect(url, ping=False)
    settings = PoolSettings(
        dags=dags,
        connect=partial(connect_url, resolved),
        where=mask_url(resolved),
        queue_names=queues or None,
        isolate=isolate,
        lease_s=lease_s,
        max_jobs=max_jobs,
        logging_level=(log_level or os.environ.get("DAGRQ_LOG") or "INFO").upper(),
    )
    run_pool(
        settings, concurrency or default_concurrency(), burst=burst, name=name, drain_s=drain_s
    )


def _load_many(pipelines: tuple[str, ...]) -> list[DAG]:
    """Load and validate each pipeline; two with one DAG name cannot be served together."""
    dags: dict[str, tuple[str, DAG]] = {}
    for address in pipelines:
        dag = load(address)
        if dag.name in dags and dags[dag.name][1] is not dag:
            raise click.UsageError(
                f"{address} and {dags[dag.name][0]} both define a DAG named {dag.name!r}; "
                "a worker serves one DAG per name: give one a different DAG(name)"
            )
        dags[dag.name] = (address, dag)
    return [dag for _, dag in dags.values()]


def _names(dags: list[DAG]) -> str:
    return ", ".join(f"DAG {d.name!r}" for d in dags)


@main.command()
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


@main.command()
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
    if as_json:
        emit_json(explanation_json(run_.explain(node)))
    else:
        print_why(console(), run_.explain(node))


@main.command()
@click.argument("run_id")
@url_option
@errors
def cancel(run_id: str, url: str | None) -> None:
    """Cancel RUN_ID: queued jobs leave their queues, running ones are stopped."""
    run_ = run_handle(run_id, url)
    after = run_.cancel()
    click.echo(f"run {run_id} {after.state}")


@main.command()
@click.argument("run_id")
@url_option
@errors
def retry(run_id: str, url: str | None) -> None:
    """Resume RUN_ID: re-run failed, skipped and canceled nodes and their descendants,
    reusing the outputs of the nodes that succeeded. Workers do the work."""
    run_ = run_handle(run_id, url)
    after = run_.resume()
    redo = [n for n, s in after.nodes.items() if s.state in ("pending", "queued")]
    click.echo(f"run {run_id} {after.state}: {len(redo)} nodes to run again")


@main.command()
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
    from ..jobs.reconcile import Reconciler

    conn, _ = connect(url)
    for run_id in run_ids:
        run_handle(run_id, url)  # RunNotFound for a wrong id
    repairs = Reconciler(conn, grace_s=grace_s, lease_margin_s=0).pass_(run_ids or None)
    for repair in repairs:
        click.echo(str(repair))
    click.echo(f"{len(repairs)} repairs")


@main.command()
@click.argument("pipelines", nargs=-1, metavar="[PIPELINE]...")
@url_option
@errors
def workers(pipelines: tuple[str, ...], url: str | None) -> None:
    """List the DAG versions that live workers serve (processes, busy, hosts) and how many
    running runs each version has; a version with runs and no worker is one whose runs wait.
    With PIPELINEs, mark the versions of that code."""
    from ..store.fleet import served_versions
    from .view import print_versions

    current = {dag.name: dag.plan_hash for dag in _load_many(pipelines)}
    conn, _ = connect(url)
    print_versions(console(), served_versions(conn), current)


@main.command()
@click.argument("run_id")
@click.argument("pipeline")
@url_option
@errors
def upgrade(run_id: str, pipeline: str, url: str | None) -> None:
    """Move RUN_ID to PIPELINE's version of its DAG: its waiting jobs go to that version's
    queues, finished nodes' outputs are kept. For a run whose version no live worker serves
    any more (refused while one does, or when the graph changed). An ended run is re-pinned,
    so that `dagrq retry` runs it on the new version."""
    dag = load(pipeline)
    run_ = run_handle(run_id, url)
    before = run_.status().version
    after = run_.upgrade(dag)
    waiting = sum(1 for n in after.nodes.values() if n.state == "queued")
    click.echo(
        f"run {run_id} ({after.state}) moved from version {before} to {after.version} of DAG "
        f"{dag.name}: {waiting} nodes queued"
    )


@main.command()
@click.argument("run_id")
@url_option
@click.option("--no-follow", is_flag=True, help="Print what is stored and stop.")
@errors
def events(run_id: str, url: str | None, no_follow: bool) -> None:
    """Print RUN_ID's state changes as JSON lines, following until the run ends."""
    run_ = run_handle(run_id, url)
    for event in run_.events(follow=not no_follow):
        click.echo(json.dumps(event))


@main.command(name="dot")
@click.argument("pipeline")
@click.option("--run", "run_id", default=None, help="Colour the nodes by this run's states.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "mermaid"]),
    default=None,
    help="Text format (default: from -o's extension, else dot).",
)
@click.option(
    "-o",
    "--output",
    default=None,
    help="Write here: .dot/.gv, .mmd, or .svg/.png/.pdf (rendered with Graphviz).",
)
@url_option
@errors
def dot_command(
    pipeline: str, run_id: str | None, fmt: str | None, output: str | None, url: str | None
) -> None:
    """Draw PIPELINE as DOT or Mermaid; joins, maps and order-only edges marked."""
    from .render import format_for, write_picture

    dag = load(pipeline)
    fmt = format_for(Path(output), fmt) if output else (fmt or "dot")
    status_ = run_handle(run_id, url).status() if run_id else None
    if status_ is not None and status_.dag != dag.name:
        raise click.UsageError(
            f"--run {run_id} is a run of DAG {status_.dag!r}, not of {dag.name!r}; give that "
            "run's pipeline"
        )
    text = dag.to_mermaid(status_) if fmt == "mermaid" else dag.to_dot(status_)
    if output is None:
        click.echo(text, nl=False)
        return
    write_picture(text, Path(output), fmt)
    click.echo(f"wrote {output}")


@main.command(name="plan")
@click.argument("pipeline")
@json_option
@errors
def plan_command(pipeline: str, as_json: bool) -> None:
    """Pre-flight report for PIPELINE, no Redis needed: joins and fan-in widths, queues,
    critical path, max parallelism, Redis commands and memory per run."""
    from ..model.preflight import preflight

    dag = load(pipeline)
    report = preflight(dag.plan, dag.param_types)
    if as_json:
        emit_json(report.to_dict())
        return
    for line in report.lines():
        click.echo(line)


@main.command()
@click.argument("pipeline")
@run_options
@url_option
@click.option(
    "--workers",
    "-w",
    default=None,
    type=click.IntRange(0, 256),
    help="Processes of the local worker pool (as `dagrq worker -c N`; 0: rely on workers "
    "elsewhere, refused with the embedded server) [default: the CPUs this process may use].",
)
@click.option(
    "--timeout",
    default=None,
    type=click.FloatRange(min=0, min_open=True),
    help="Cancel the run if it has not ended after this many seconds (exit 4).",
)
@click.option("--keep", is_flag=True, help="With --timeout: leave the run running instead.")
@click.option("-q", "--quiet", is_flag=True, help="No progress; print only the results.")
@errors
def run(
    pipeline: str,
    params: tuple[str, ...],
    params_file: str | None,
    run_name: str | None,
    tags: tuple[str, ...],
    url: str | None,
    workers: int | None,
    timeout: float | None,
    keep: bool,
    quiet: bool,
) -> None:
    """Submit PIPELINE, run local workers until the run ends, print the sink results.

    Exit 0 when the run succeeded, 1 when it failed or was canceled, 2 on a usage or
    validation error, 4 when --timeout ran out (the run is canceled unless --keep), 130 when
    interrupted (the run is canceled).
    """
    from rich.console import Console

    from ..connection import resolve_url
    from .progress import follow

    out = Console()
    dag = load(pipeline)
    values = dag.validate_params(read_params(params, params_file), from_strings=True)
    if workers == 0:
        if resolve_url(url) is None:
            raise click.UsageError(
                "-w 0 starts no worker, and the embedded server has no others: nothing would "
                "run; drop -w 0, or pass --url of a Redis your workers use"
            )
        click.echo("note: -w 0: no local workers; waiting for workers elsewhere", err=True)
    conn, resolved = connect(url)
    run_: Run | None = None
    with _local_workers(pipeline, resolved, workers):
        try:
            with _interruptible():
                run_ = dag.submit(conn, run_name=run_name, run_tags=tags, **values)
                if not quiet:
                    out.print(f"run {run_.id} of DAG {dag.name}", highlight=False)
                status = _follow_with_timeout(run_, out, quiet, timeout, follow)
        except KeyboardInterrupt:
            # Ctrl-C, SIGTERM or a closed terminal: a run never hangs, so end it, while
            # the workers still run to hear the stop command
            if run_ is not None:
                run_.cancel()
                click.echo(f"interrupted: run {run_.id} canceled", err=True)
            sys.exit(130)
        except RunTimeout:
            assert run_ is not None
            if keep:
                click.echo(
                    f"run {run_.id} did not end within --timeout {timeout:g} s; it goes on "
                    f"(--keep): `dagrq worker {pipeline}` finishes it, `dagrq status {run_.id}` "
                    "follows it",
                    err=True,
                )
            else:
                run_.cancel()
                click.echo(
                    f"run {run_.id} did not end within --timeout {timeout:g} s: canceled "
                    "(--keep leaves it running)",
                    err=True,
                )
            sys.exit(TIMEOUT_EXIT)
    if status.state == "succeeded":
        for sink in dag.sinks:
            print_value(out, sink, run_.result(sink))
        return
    failed = status.failed()
    for node, error in failed.items():
        click.echo(f"error: node {node} failed: {error}", err=True)
    if not failed:
        click.echo(f"error: run {run_.id} ended {status.state}", err=True)
    sys.exit(1)


def _follow_with_timeout(
    run_: Run, console: Console, quiet: bool, timeout: float | None, follow: Any
) -> Any:
    if timeout is None:
        return follow(run_, console, quiet=quiet)

    def alarm(signum: int, frame: Any) -> None:
        raise RunTimeout(f"run {run_.id} did not end within --timeout {timeout:g} s")

    previous = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    try:
        return follow(run_, console, quiet=quiet)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


@contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM and SIGHUP into KeyboardInterrupt, so cleanup runs as for Ctrl-C."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@contextmanager
def _local_workers(pipeline: str, url: str, count: int | None) -> Iterator[Processes]:
    """Start one ``dagrq worker -c count`` pool, logging under ``.dagrq/logs``; stop it
    (drain, then hard) on exit."""
    from ..connection import STATE_DIR
    from ..workers.pool import default_concurrency
    from ..workers.processes import Processes, worker_argv

    env = {"DAGRQ_LOG": os.environ.get("DAGRQ_LOG", "WARNING"), "DAGRQ_URL": url}
    procs = Processes(Path(STATE_DIR, "logs"), env=env)
    count = default_concurrency() if count is None else count
    try:
        if count:
            procs.start(worker_argv(pipeline, "-c", str(count), "--drain-timeout", "5"))
        yield procs
    finally:
        procs.stop(grace_s=10)
