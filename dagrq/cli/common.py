"""What every ``dagrq`` command shares: options, error mapping, connections, loading.

Exit codes: 0 success, 1 the run failed, 2 usage or validation error (one line, no traceback),
3 still running, 4 a `dagrq run --timeout` ran out (docs/cli.md).
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from .. import loader
from ..errors import DagrqError
from ..model.dag import DAG

if TYPE_CHECKING:
    from rich.console import Console

    from ..client import Run

F = TypeVar("F", bound=Callable[..., Any])

url_option = click.option(
    "--url",
    envvar=None,
    default=None,
    help="Redis URL (default: $DAGRQ_URL, $REDIS_URL, else an embedded server under .dagrq/).",
)
param_option = click.option(
    "-p",
    "--param",
    "params",
    multiple=True,
    metavar="KEY=VALUE",
    help="A run parameter; repeat for more. Values are coerced to the annotated type.",
)


def errors(fn: F) -> F:
    """Turn dagrq, usage and Redis errors into one line on stderr and the error's exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DagrqError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(exc.exit_code)
        except click.UsageError as exc:  # a bad value found by the command itself: one line
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(2)
        except Exception as exc:
            redis = sys.modules.get("redis")  # a command that never imported redis cannot fail so
            if redis is None or not isinstance(exc, redis.RedisError):
                raise
            click.echo(f"error: Redis: {' '.join(str(exc).split())}; check --url", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def parse_params(pairs: tuple[str, ...]) -> dict[str, str]:
    """``-p KEY=VALUE`` pairs as a dict (values still text); UsageError for a malformed one."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise click.UsageError(f"-p expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


def load(pipeline: str) -> DAG:
    """Load and validate the DAG at ``pipeline`` (``module:attr`` or ``file.py:attr``)."""
    dag = loader.load(pipeline)
    dag.validate()
    return dag


def console() -> Console:
    """A console; 200 columns when writing to a pipe or file, so table columns are not
    squeezed (``$COLUMNS`` is not asked: shells and CI runners export it for other uses)."""
    from rich.console import Console

    return Console() if sys.stdout.isatty() else Console(width=200)


def connect(url: str | None, *, ping: bool = True) -> tuple[Any, str]:
    """``(connection, url)`` for ``--url`` (see :mod:`dagrq.connection`). With the embedded
    default the server is shared by every command on this state directory and released when
    this command ends: the last command to leave stops it."""
    from ..connection import open_connection

    conn, resolved, embedded = open_connection(url, ping=ping)
    if embedded is not None:

        def release() -> None:
            conn.connection_pool.disconnect()
            embedded.close()

        click.get_current_context().call_on_close(release)
    return conn, resolved


def run_handle(run_id: str, url: str | None) -> Run:
    """The :class:`~dagrq.client.Run` of ``run_id`` (RunNotFound for a wrong id)."""
    from ..client import Run

    conn, _ = connect(url)
    return Run.fetch(run_id, connection=conn)


def known_node(run: Run, node: str) -> str:
    """``node``, when the run's plan has it; else a usage error naming the nodes (exit 2)."""
    specs = run.plan().specs
    if node not in specs:
        raise click.UsageError(f"run {run.id} has no node {node!r} (nodes: {', '.join(specs)})")
    return node


def emit_json(value: Any) -> None:
    """``value`` as one JSON document on stdout."""
    click.echo(json.dumps(value, indent=2, default=str))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON (docs/cli.md).")


def run_options(fn: F) -> F:
    """``-p KEY=VALUE``..., ``--params-file``, ``--name``, ``--tag``..., ``--priority``,
    ``--refresh [NODE]``... of submit and run."""
    for option in reversed(
        [
            param_option,
            click.option(
                "--params-file",
                default=None,
                metavar="FILE",
                help="Run parameters from a JSON object in FILE ('-' for stdin); -p wins.",
            ),
            click.option("--name", "run_name", default=None, help="A name for the run."),
            click.option(
                "--tag", "tags", multiple=True, help="A tag for the run; repeat for more."
            ),
            click.option(
                "--priority",
                default=0,
                type=click.IntRange(-1000, 1000),
                help="Added to every node's priority: higher runs first among waiting work "
                "(docs/flow-control.md) [default: 0].",
            ),
            click.option(
                "--refresh",
                multiple=True,
                is_flag=False,
                flag_value="*",
                metavar="[NODE]",
                help="Ignore and overwrite the cache of NODE and everything downstream of it "
                "(repeat for more); alone, of every node (docs/caching.md).",
            ),
        ]
    ):
        fn = option(fn)
    return fn


def read_params(pairs: tuple[str, ...], params_file: str | None) -> dict[str, Any]:
    """Run parameters from ``--params-file`` (a JSON object), then ``-p`` pairs over them."""
    values: dict[str, Any] = {}
    if params_file is not None:
        try:
            text = sys.stdin.read() if params_file == "-" else Path(params_file).read_text()
            loaded = json.loads(text)
        except OSError as exc:
            raise click.UsageError(
                f"--params-file {params_file}: {exc.strerror or exc}; give a readable JSON file"
            ) from None
        except json.JSONDecodeError as exc:
            raise click.UsageError(
                f"--params-file {params_file}: not JSON ({exc.msg} at line {exc.lineno}); "
                'write one object, e.g. {"day": "2026-11-28"}'
            ) from None
        if not isinstance(loaded, dict):
            raise click.UsageError(
                f"--params-file {params_file}: holds a {type(loaded).__name__}, not an "
                'object; write one object, e.g. {"day": "2026-11-28"}'
            )
        values.update(loaded)
    values.update(parse_params(pairs))
    return values


#: characters of a value printed in text form before it is cut (``--json`` prints it whole)
SHOWN_CHARS = 2000


def print_value(out: Console, name: str, value: Any) -> None:
    """``name: value`` for people: text as it is (under ``name:`` when it spans lines),
    anything else as one line of JSON; cut after :data:`SHOWN_CHARS` characters with a note
    on how to get all of it."""
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    if len(text) > SHOWN_CHARS:
        text = (
            f"{text[:SHOWN_CHARS]}\n... ({len(text):,} characters; "
            "`dagrq result RUN NODE --json` prints all)"
        )
    click.echo(f"{name}:\n{text}" if isinstance(value, str) or "\n" in text else f"{name}: {text}")
