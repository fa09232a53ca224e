"""`dagrq submit` and `dagrq run`: starting runs (`run` with local workers and live progress)."""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ..errors import RunTimeout
from ..model.status import SUCCESS_STATES
from .common import (
    connect,
    errors,
    load,
    print_value,
    read_params,
    run_options,
    url_option,
)

if TYPE_CHECKING:
    from multiprocessing.process import BaseProcess

    from rich.console import Console

    from ..client import Run
    from ..model.dag import DAG

#: `dagrq run`'s exit code when --timeout ran out
TIMEOUT_EXIT = 4
#: seconds `dagrq run`'s local workers may take to finish running nodes when it stops them
DRAIN_S = 5.0


@click.command()
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
    priority: int,
    refresh: tuple[str, ...],
    url: str | None,
) -> None:
    """Enqueue one run of PIPELINE and print its run id; workers do the rest."""
    dag = load(pipeline)
    values = dag.validate_params(read_params(params, params_file), from_strings=True)
    conn, _ = connect(url)
    click.echo(_submit(dag, conn, values, run_name, tags, priority, refresh).id)


@click.command()
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
@click.option(
    "--redis-wait",
    "redis_wait_s",
    default=300.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds to wait for Redis when it stops answering (a restart, a failover) before "
    "giving up with exit 1; the run goes on where it was once Redis is back.",
)
@click.option("-q", "--quiet", is_flag=True, help="No progress; print only the results.")
@errors
def run(
    pipeline: str,
    params: tuple[str, ...],
    params_file: str | None,
    run_name: str | None,
    tags: tuple[str, ...],
    priority: int,
    refresh: tuple[str, ...],
    url: str | None,
    workers: int | None,
    timeout: float | None,
    keep: bool,
    redis_wait_s: float,
    quiet: bool,
) -> None:
    # long: one command's whole life (submit, local workers, progress, exit code) in order
    """Submit PIPELINE, run local workers until the run ends, print the sink results.

    Exit 0 when the run succeeded, 1 when it failed or was canceled (or Redis stayed out of
    reach past --redis-wait: the run goes on where it was), 2 on a usage or validation error,
    4 when --timeout ran out (the run is canceled unless --keep), 130 when interrupted (the
    run is canceled). A Redis outage shorter than --redis-wait is waited out.
    """
    from ..connection import resolve_url

    dag = load(pipeline)
    values = dag.validate_params(read_params(params, params_file), from_strings=True)
    embedded = resolve_url(url) is None
    if workers == 0:
        if embedded:
            raise click.UsageError(
                "-w 0 starts no worker, and the embedded server has no others: nothing would "
                "run; drop -w 0, or pass --url of a Redis your workers use"
            )
        click.echo("note: -w 0: no local workers; waiting for workers elsewhere", err=True)
    conn, resolved = connect(url)
    run_: Run | None = None
    with _local_workers(dag, resolved, workers, embedded):
        try:
            with _interruptible():
                run_ = _submit(dag, conn, values, run_name, tags, priority, refresh)
                # imported while the forked pool runs the first nodes (two cores)
                from rich.console import Console

                from .progress import follow

                out = Console()
                if not quiet:
                    out.print(f"run {run_.id} of DAG {dag.name}", highlight=False)
                status = follow(
                    run_, out, quiet=quiet, redis_wait_s=redis_wait_s, timeout_s=timeout
                )
        except KeyboardInterrupt:
            # Ctrl-C, SIGTERM or a closed terminal: a run never hangs, so end it, while
            # the workers still run to hear the stop command
            if run_ is not None:
                run_.cancel()
                click.echo(f"interrupted: run {run_.id} canceled", err=True)
            sys.exit(130)
        except RunTimeout:
            assert run_ is not None
            _timed_out(run_, pipeline, timeout or 0, keep)
    _report_end(out, dag, run_, status)


def _timed_out(run_: Run, pipeline: str, timeout: float, keep: bool) -> None:
    """``--timeout`` ran out: cancel the run (or, with ``--keep``, say how to follow it) and
    exit with :data:`TIMEOUT_EXIT`."""
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


def _submit(
    dag: DAG,
    conn: Any,
    values: dict[str, Any],
    name: str | None,
    tags: tuple[str, ...],
    priority: int,
    refresh: tuple[str, ...],
) -> Run:
    """``dag.submit`` with the run options of ``run`` and ``submit`` (``--refresh`` alone:
    every node; else the nodes named)."""
    wanted: bool | list[str] = True if "*" in refresh else list(refresh)
    return dag.submit(
        conn, run_name=name, run_tags=tags, priority=priority, refresh=wanted, **values
    )


def _report_end(out: Console, dag: DAG, run_: Run, status: Any) -> None:
    """Print the sink results of a run that succeeded (a sink that did not run says why:
    the run succeeded all the same); else its errors, and exit 1."""
    if status.state == "succeeded":
        for sink in dag.sinks:
            node = status.nodes[sink]
            if node.state in SUCCESS_STATES:
                print_value(out, sink, run_.result(sink))
            else:
                why = f": {node.reason}" if node.reason else ""
                click.echo(f"{sink}: no output ({node.state}{why})")
        return
    failed = status.failed()
    for node, error in failed.items():
        click.echo(f"error: node {node} failed: {error}", err=True)
    if not failed:
        click.echo(f"error: run {run_.id} ended {status.state}", err=True)
    sys.exit(1)


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
def _local_workers(
    dag: DAG, url: str, count: int | None, embedded: bool
) -> Iterator[BaseProcess | None]:
    """A ``dagrq worker -c count`` pool forked from this process (the DAG is loaded
    already), logging to ``.dagrq/logs/worker.log``; drained, then stopped, on exit."""

    from ..connection import connect as connect_url
    from ..connection import mask_url
    from ..embedded import STATE_DIR
    from ..workers.processes import default_concurrency, fork_process, stop_process

    count = default_concurrency() if count is None else count
    if not count:
        yield None
        return
    options = {
        "logging_level": os.environ.get("DAGRQ_LOG", "WARNING").upper(),
        "warn_volatile": not embedded,  # the embedded server is for trying dagrq: it says so
        "schedule": False,  # a one-off run: `dagrq worker` fires schedules
    }
    pool = fork_process(
        "dagrq.workers.pool:local_pool",
        ([dag], partial(connect_url, url), mask_url(url), count, options, DRAIN_S),
        log_path=Path(STATE_DIR, "logs", "worker.log"),
    )
    try:
        yield pool
    finally:
        stop_process(pool, grace_s=DRAIN_S * 2)


COMMANDS = (submit, run)
