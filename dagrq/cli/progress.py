"""Following a run while it goes: a rich live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..client import Run
from ..model.status import FINAL_NODE_STATES, RunStatus


def follow(run: Run, console: Console, *, quiet: bool = False, poll_s: float = 0.1) -> RunStatus:
    """Poll ``run`` until it ends, showing progress on ``console``; return the final status.

    On a terminal: a progress bar (nodes done / total) with the running nodes, and failures
    printed as they happen. Otherwise one plain line per node state change. ``quiet``
    shows nothing.
    """
    if quiet:
        return _poll(run, poll_s, lambda s: None)
    if console.is_terminal:
        return _live(run, console, poll_s)
    seen: dict[str, str] = {}

    def lines(status: RunStatus) -> None:
        for name, node in status.nodes.items():
            if seen.get(name) != node.state:
                seen[name] = node.state
                if node.state == "pending":
                    continue
                stamp = datetime.now().strftime("%H:%M:%S")
                extra = f" ({node.error})" if node.error and node.state == "failed" else ""
                console.print(f"{stamp} {name} {node.state}{extra}", highlight=False)

    return _poll(run, poll_s, lines)


def _poll(run: Run, poll_s: float, show: Callable[[RunStatus], None]) -> RunStatus:
    while True:
        status = run.status()
        show(status)
        if status.done:
            return status
        time.sleep(poll_s)


def progress_counts(status: RunStatus) -> tuple[int, int]:
    """``(total, done)`` for the progress bar: every node, plus every item of mapped nodes.

    Examples:
        >>> from dagrq.model.status import NodeStatus
        >>> s = RunStatus(id="r", dag="d", state="running", created_at=0, nodes={
        ...     "a": NodeStatus(state="succeeded"),
        ...     "m": NodeStatus(state="running", items={"total": 10, "done": 4}),
        ... })
        >>> progress_counts(s)
        (12, 5)
    """
    total = done = 0
    for node in status.nodes.values():
        total += 1 + (node.items["total"] if node.items else 0)
        done += (1 if node.state in FINAL_NODE_STATES else 0) + (
            node.items["done"] if node.items else 0
        )
    return total, done


def _live(run: Run, console: Console, poll_s: float) -> RunStatus:
    reported: set[str] = set()
    columns = (
        TextColumn("[bold]{task.fields[dag]}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = None

        def show(status: RunStatus) -> None:
            nonlocal task
            total, done = progress_counts(status)
            running = [name for name, n in status.nodes.items() if n.state == "running"]
            text = ("running: " + ", ".join(running)) if running else ""
            if task is None:
                task = bar.add_task(text, total=total, dag=status.dag)
            bar.update(task, total=total, completed=done, description=text)
            for name, node in status.nodes.items():
                if node.state == "failed" and name not in reported:
                    reported.add(name)
                    bar.console.print(f"[red]✗ {name} failed:[/red] {node.error}")

        return _poll(run, poll_s, show)
