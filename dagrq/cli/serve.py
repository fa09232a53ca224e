"""`dagrq worker`, `workers` and `upgrade`: serving DAGs, seeing which versions are served, and
moving a run to another version."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from ..model.dag import DAG
from .common import (
    connect,
    console,
    emit_json,
    errors,
    json_option,
    load,
    run_handle,
    url_option,
)

if TYPE_CHECKING:
    pass


@click.command()
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
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"], case_sensitive=False),
    envvar="DAGRQ_LOG_FORMAT",
    default="text",
    show_default=True,
    help="The worker's log lines as text, or one JSON object per line with run, node, "
    "attempt and trace_id [env: DAGRQ_LOG_FORMAT].",
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
    log_format: str,
    burst: bool,
    queues: tuple[str, ...],
    name: str | None,
    lease_s: int,
    worker_class: str | None,
) -> None:
    # long: the options read in order into one PoolSettings, as the pool's help lists them
    """Run a supervised pool of worker processes for the PIPELINEs' queues (on any machine
    that reaches Redis).

    Each process runs nodes in-process and is replaced at once if it dies; its node is then
    retried or failed by its rule. A node past its timeout= is stopped, even when blocked in
    C (its process is killed). Processes wait for Redis and ride out restarts, failovers and
    pauses of the server. SIGTERM drains: running nodes finish (up to --drain-timeout), no
    new ones start. Alert hooks of the DAGs served run here; with $DAGRQ_OTEL_FILE (or a
    tracer provider set up by a pipeline) its processes emit OpenTelemetry spans
    (docs/observability.md).
    """
    from functools import partial

    from ..connection import connect as connect_url
    from ..connection import mask_url, resolve_url
    from ..workers.pool import PoolSettings, run_pool
    from ..workers.processes import default_concurrency

    if worker_class is not None:
        click.echo("warning: --worker-class is deprecated: use --isolate for fork", err=True)
        isolate = isolate or worker_class == "fork"
    from .. import tracing
    from ..workers.logformat import FORMAT_ENV

    os.environ[FORMAT_ENV] = log_format.lower()  # the pool's processes inherit it
    dags = load_many(pipelines)
    if not tracing.enabled():  # a pipeline may have set up its own tracing
        tracing.setup_from_env()
    every = [q for dag in dags for q in dag.queues]
    unknown = sorted(set(queues) - set(every))
    if unknown:
        raise click.UsageError(
            f"--queue {unknown[0]!r} is not a queue of {_names(dags)} (queues: {', '.join(every)})"
        )
    _conn, resolved = connect(url, ping=False)
    embedded = resolve_url(url) is None
    settings = PoolSettings(
        dags=dags,
        connect=partial(connect_url, resolved),
        where=mask_url(resolved),
        queue_names=queues or None,
        isolate=isolate,
        lease_s=lease_s,
        max_jobs=max_jobs,
        logging_level=(log_level or os.environ.get("DAGRQ_LOG") or "INFO").upper(),
        warn_volatile=not embedded,  # the embedded server is for trying dagrq: it says so
    )
    run_pool(
        settings, concurrency or default_concurrency(), burst=burst, name=name, drain_s=drain_s
    )


def load_many(pipelines: tuple[str, ...]) -> list[DAG]:
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


@click.command()
@click.argument("pipelines", nargs=-1, metavar="[PIPELINE]...")
@url_option
@json_option
@errors
def workers(pipelines: tuple[str, ...], url: str | None, as_json: bool) -> None:
    """List the DAG versions that live workers serve (processes, busy, hosts) and how many
    running runs each version has; a version with runs and no worker is one whose runs wait.
    With PIPELINEs, mark the versions of that code."""
    from ..store.fleet import served_versions
    from .view import print_versions

    current = {dag.name: dag.plan_hash for dag in load_many(pipelines)}
    conn, _ = connect(url)
    versions = served_versions(conn)
    if as_json:
        emit_json(
            [
                {**v.model_dump(), "busy": v.busy, "current": current.get(v.dag) == v.version}
                for v in versions
            ]
        )
        return
    print_versions(console(), versions, current)


@click.command()
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
    if before == dag.plan_hash:
        click.echo(f"run {run_id} is on version {before} of DAG {dag.name} already: nothing moved")
        return
    after = run_.upgrade(dag)
    waiting = sum(1 for n in after.nodes.values() if n.state == "queued")
    click.echo(
        f"run {run_id} ({after.state}) moved from version {before} to {after.version} of DAG "
        f"{dag.name}: {waiting} nodes queued"
    )


COMMANDS = (worker, workers, upgrade)
