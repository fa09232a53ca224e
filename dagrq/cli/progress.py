"""Following a run while it goes: a rich live bar on a terminal, plain lines otherwise."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from functools import partial

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..client import Run
from ..errors import RedisUnreachable, RunError, RunNotFound, RunTimeout
from ..model.status import FINAL_NODE_STATES, RunStatus
from ..store.outage import unreachable

#: seconds ``follow`` waits for Redis to answer again before it gives up (``--redis-wait``)
REDIS_WAIT_S = 300.0
#: seconds ``follow`` first waits to look again, and again after each change it sees; the
#: wait then doubles up to its ``poll_s``
FIRST_LOOK_S = 0.01


def follow(
    run: Run,
    console: Console,
    *,
    quiet: bool = False,
    poll_s: float = 0.1,
    redis_wait_s: float = REDIS_WAIT_S,
    timeout_s: float | None = None,
) -> RunStatus:
    """Poll ``run`` until it ends, showing progress on ``console``; return the final status.
    It looks again :data:`FIRST_LOOK_S` after a change, then less often, down to every
    ``poll_s`` seconds.

    On a terminal: a progress bar (nodes done / total) with the running nodes, and failures
    printed as they happen. Otherwise one plain line per node state change. ``quiet``
    shows nothing. An outage of Redis is waited out, said on the progress line ("Redis
    unreachable, retrying (N s)"), for up to ``redis_wait_s`` seconds.

    Raises:
        RedisUnreachable: Redis did not answer for ``redis_wait_s`` seconds.
        RunError: Redis came back without the run (a server that keeps nothing).
        RunTimeout: the run had not ended ``timeout_s`` seconds after the call (checked by
            the polling loop itself: a timer signal could land in library code that
            swallows it).
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    wait = partial(_poll, redis_wait_s=redis_wait_s, deadline=deadline)
    if quiet:
        return wait(run, poll_s, lambda s: None, lambda text: None)
    if console.is_terminal:
        return _live(run, console, poll_s, wait)
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

    said: list[str] = []

    def note(text: str) -> None:  # once per outage, and when it ends
        if text.split(",")[0] != (said[-1].split(",")[0] if said else None):
            said.append(text)
            console.print(f"{datetime.now():%H:%M:%S} {text}", highlight=False)

    return wait(run, poll_s, lines, note)


def _poll(
    run: Run,
    poll_s: float,
    show: Callable[[RunStatus], None],
    note: Callable[[str], None],
    redis_wait_s: float,
    deadline: float | None,
) -> RunStatus:
    down_since: float | None = None
    delay, last = FIRST_LOOK_S, None
    while True:
        if deadline is not None and time.monotonic() >= deadline:
            raise RunTimeout(f"run {run.id} did not end in time")
        try:
            status = run.status()
        except RunNotFound:
            if down_since is None:
                raise
            raise RunError(
                f"run {run.id} is gone: Redis came back without it (a server that persists "
                "nothing loses every run on a restart; run it with --appendonly yes) and "
                "submit it again"
            ) from None
        except Exception as exc:
            if not unreachable(exc):
                raise
            now = time.monotonic()
            down_since = down_since if down_since is not None else now
            if now - down_since > redis_wait_s:
                raise RedisUnreachable(
                    f"Redis unreachable for {now - down_since:.0f} s (--redis-wait): run {run.id} "
                    f"goes on where it was; when Redis is back, `dagrq status {run.id}` shows "
                    f"it and `dagrq retry {run.id}` finishes what failed"
                ) from None
            note(f"Redis unreachable, retrying ({now - down_since:.0f} s)")
            time.sleep(min(1.0, max(poll_s, 0.2)))
            continue
        if down_since is not None:
            note(f"Redis answers again, after {time.monotonic() - down_since:.0f} s")
            down_since = None
        show(status)
        if status.done:
            return status
        # soon after a change, the next is likely soon too (a short run ends in tens of ms)
        seen = {name: (n.state, n.items) for name, n in status.nodes.items()}
        delay = FIRST_LOOK_S if seen != last else min(poll_s, delay * 2)
        last = seen
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        time.sleep(delay if left is None else min(delay, left))


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


def _live(run: Run, console: Console, poll_s: float, wait: Callable[..., RunStatus]) -> RunStatus:
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

        def note(text: str) -> None:
            if task is not None:
                bar.update(task, description=f"[yellow]{text}")

        return wait(run, poll_s, show, note)
