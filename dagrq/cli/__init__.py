"""The ``dagrq`` command: thin click commands that parse, delegate and map errors to exit codes.

Exit codes: 0 success, 1 the run failed, 2 usage or validation error (one line, no traceback),
3 still running, 4 a ``dagrq run --timeout`` ran out (docs/cli.md). Each module holds the
commands of one concern and lists them in ``COMMANDS``.
"""

from __future__ import annotations

import gc
from typing import Any

import click

from . import (
    caching,
    define,
    limits,
    operate,
    reading,
    running,
    scheduled,
    serve,
    server,
    waiting,
)


class _Dagrq(click.Group):
    """The command group, leaving its garbage to the operating system."""

    def main(self, *args: Any, **kwargs: Any) -> Any:
        """click's main; at exit the collector is frozen: the interpreter's teardown would
        otherwise walk every imported module's objects (a third of a second of a `dagrq
        run` on a small DAG), and the process's memory goes back whole anyway."""
        try:
            return super().main(*args, **kwargs)
        finally:
            gc.freeze()


@click.group(cls=_Dagrq, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="dagrq")
def main() -> None:
    """dagrq: declarative DAG workflows on RQ and Redis."""


for _module in (
    define,
    running,
    serve,
    scheduled,
    reading,
    operate,
    limits,
    caching,
    waiting,
    server,
):
    for _command in _module.COMMANDS:
        main.add_command(_command)
