"""Rendering runs for people: the status table and the `why` explanation (rich)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..model.status import STATE_COLORS, Explanation, NodeStatus, RunStatus, RunSummary

if TYPE_CHECKING:
    from ..store.fleet import VersionInfo

#: the shared palette; pending is grey on a terminal (white would vanish on a light one)
STATE_STYLE = {**STATE_COLORS, "pending": "grey62"}

#: `dagrq status` exit codes by run state
STATUS_EXIT = {"succeeded": 0, "failed": 1, "canceled": 1, "running": 3, "queued": 3}


def _clock(ts: float | None) -> str:
    return datetime.fromtimestamp(ts).strftime("%H:%M:%S") if ts else ""


def node_detail(status: RunStatus, node: NodeStatus) -> str:
    """What a reader needs beside a node's state: its error, what it waits for, a worker of
    its version missing, a mapped node's item counts."""
    detail = node.error or ""
    if node.state == "waiting" and node.waiting:
        detail = f"waiting for {node.waiting}"
    elif node.state == "cached" and node.cached_from:
        detail = f"output kept from run {node.cached_from}"
    elif node.state == "pending" and node.waits_for:
        detail = "waits for " + ", ".join(node.waits_for)
    elif node.queue in status.unserved and node.state == "queued":
        detail = f"no live worker of version {status.version}" + (f"; {detail}" if detail else "")
    elif node.children:
        runs = ", ".join(node.children[:3]) + (" ..." if len(node.children) > 3 else "")
        detail = f"{len(node.children)} child runs: {runs}" + (f"; {detail}" if detail else "")
    elif node.items is not None:
        shown: tuple[str, ...] = ("queued", "running", "done", "failed")
        shown += ("canceled",) if node.items.get("canceled") else ()
        counts = " · ".join(f"{node.items[k]:,} {k}" for k in shown)
        detail = f"{node.items['total']:,} items: {counts}" + (f"; {detail}" if detail else "")
    return detail


def _title(status: RunStatus) -> Text:
    named = f" · {status.name}" if status.name else ""
    tagged = f" [{', '.join(status.tags)}]" if status.tags else ""
    parent = ""
    if status.parent:
        run, _, node = status.parent.partition(" ")
        parent = f" · child of run {run} (node {node})"
    return Text.assemble(
        f"run {status.id} · DAG {status.dag}{named}{tagged}{parent} · ",
        (status.state, STATE_STYLE.get(status.state, "")),
    )


_COLUMNS = ("node", "state", "attempts", "queue", "started", "duration")
#: the narrowest the detail column may be (narrower, details go on lines of their own)
DETAIL_MIN = 30


def _rows(status: RunStatus) -> list[tuple[str, ...]]:
    return [
        (
            name,
            node.state,
            str(node.attempts),
            node.queue or "",
            _clock(node.started_at),
            f"{node.duration_s:.2f}s" if node.duration_s is not None else "",
        )
        for name, node in status.nodes.items()
    ]


def table_width(status: RunStatus) -> int:
    """The width :func:`status_table` needs: its unwrapped columns whole, the detail column
    :data:`DETAIL_MIN` wide, each column padded by one a side, and the borders."""
    rows = _rows(status)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(_COLUMNS)]
    columns = len(_COLUMNS) + 1
    return sum(widths) + DETAIL_MIN + 2 * columns + columns + 1


def status_table(status: RunStatus) -> Table:
    """A table of every node: state, attempts, queue, start, duration, error or what it
    waits for (for a terminal at least :func:`table_width` wide)."""
    table = Table(title=_title(status), title_justify="left")
    for column in _COLUMNS:
        table.add_column(column, no_wrap=True)
    table.add_column("detail", min_width=DETAIL_MIN, ratio=1)
    for row, node in zip(_rows(status), status.nodes.values(), strict=True):
        state = Text(node.state, style=STATE_STYLE.get(node.state, ""))
        table.add_row(row[0], state, *row[2:], node_detail(status, node))
    return table


def status_lines(status: RunStatus, width: int) -> list[Text]:
    """The status for a narrow terminal: per node one line (name, state, attempts, duration;
    names and states whole) and its detail indented on the next, wrapped to ``width``."""
    names = max((len(n) for n in status.nodes), default=4)
    states = max((len(s.state) for s in status.nodes.values()), default=5)
    lines = [_title(status)]
    for name, node in status.nodes.items():
        took = f"{node.duration_s:.2f}s" if node.duration_s is not None else ""
        row = Text(f"{name:<{names}}  ")
        row.append(f"{node.state:<{states}}", style=STATE_STYLE.get(node.state, ""))
        row.append(f"  ×{node.attempts}  {took}".rstrip())
        lines.append(row)
        detail = node_detail(status, node)
        if detail:
            lines += [Text("    " + part, style="dim") for part in _wrap(detail, width - 4)]
    return lines


def _wrap(text: str, width: int) -> list[str]:
    import textwrap

    return textwrap.wrap(text, max(20, width), break_long_words=True) or [text]


def print_status(console: Console, status: RunStatus) -> None:
    """The status table when it fits the terminal with its detail column at least 30 wide
    (else one line per node and its detail under it: never a column squeezed to nothing),
    then what else a reader must know: damage, re-executed bodies."""
    if table_width(status) <= console.width:
        console.print(status_table(status))
    else:
        for line in status_lines(status, console.width):
            console.print(line, overflow="fold")
    if status.damaged:
        console.print(Text(f"run state damaged: {status.damaged}", style="bold red"))
    if status.unserved:
        console.print(
            Text(
                f"waiting for a worker that serves version {status.version} of DAG "
                f"{status.dag!r}: no live worker listens on {', '.join(status.unserved)}. "
                f"Start one with this version's code, `dagrq upgrade {status.id} PIPELINE` "
                f"to go on with another version, or `dagrq cancel {status.id}`",
                style="bold yellow",
            )
        )
    if status.reexecuted:
        console.print(
            f"{status.reexecuted} {'body' if status.reexecuted == 1 else 'bodies'} ran more than "
            "once (retries, or re-runs after a lost worker: a body runs at least once)"
        )


def runs_table(runs: list[RunSummary]) -> Table:
    """``dagrq runs``: one row per run, newest first."""
    table = Table(title_justify="left")
    columns = ("run", "dag", "name", "state", "started", "duration", "progress", "params")
    waiting = any(r.waiting for r in runs)
    for column in (*columns, "trigger", *(("waiting for",) if waiting else ())):
        table.add_column(column, no_wrap=column not in ("name", "params", "trigger", "waiting for"))
    for run in runs:
        started = datetime.fromtimestamp(run.created_at).strftime("%Y-%m-%d %H:%M:%S")
        duration = f"{run.duration_s:.1f}s" if run.duration_s is not None else ""
        params = ", ".join(f"{k}={v}" for k, v in run.params.items())
        name = run.name or ""
        if run.tags:
            name = f"{name} [{', '.join(run.tags)}]".strip()
        table.add_row(
            run.id,
            run.dag,
            name,
            Text(run.state, style=STATE_STYLE.get(run.state, "")),
            started,
            duration,
            f"{run.done}/{run.total}",
            params,
            run.trigger,
            *((run.waiting or "",) if waiting else ()),
        )
    return table


def print_node(console: Console, name: str, node: NodeStatus) -> None:
    """``dagrq status RUN NODE``: one node in full, its traceback included."""
    style = STATE_STYLE.get(node.state, "")
    console.print(Text.assemble(f"node {name}: ", (node.state, style)))
    rows = {
        "attempts": str(node.attempts),
        "queue": node.queue or "",
        "ran on": node.worker or "",
        "started": _clock(node.started_at),
        "duration": f"{node.duration_s:.3f}s" if node.duration_s is not None else "",
        "rule": node.rule or "",
        "runs": node.command or "",
        "waits for": ", ".join(node.waits_for),
        "reason": node.reason or "",
        "error": node.error or "",
    }
    for key, value in rows.items():
        if value:
            console.print(f"  {key}: {value}", highlight=False, markup=False)
    failed = node.attempt_errors
    if node.state == "failed":
        failed = failed[:-1]  # the last one is the node's error, shown above
    for attempt in failed:  # attempts that failed and were retried
        line = f"  attempt {attempt['attempt']} failed: {attempt['error']}"
        console.print(line, highlight=False, markup=False)
    if node.traceback:
        console.print("  traceback:")
        console.print(node.traceback.rstrip(), highlight=False, markup=False)


def print_why(console: Console, why: Explanation) -> None:
    """One node explained, in plain sentences."""
    style = STATE_STYLE.get(why.state, "")
    console.print(Text.assemble(f"node {why.node}: ", (why.state, style)))
    if why.command:
        console.print(f"  runs: {why.command}", highlight=False, markup=False)
    if not why.parents:
        console.print("  no upstream nodes: enqueued when the run was submitted")
    elif why.rule == "always":
        console.print(
            f"  rule always over {len(why.parents)} parents: enqueued when the run was "
            "submitted, reading none of them"
        )
    else:
        console.print(f"  rule {why.rule} over {len(why.parents)} parents")
        for parent, state in why.parents.items():
            got = why.arrived.get(parent)
            shown = state if got in (None, state) else f"{state}, arrived as {got}"
            console.print(Text.assemble("    ", parent, "  ", (shown, STATE_STYLE.get(state, ""))))
        verdict = {
            "fire": "the rule is met",
            "skip": "the rule can no longer be met, so the node is skipped",
            "upstream_failed": "the rule can no longer be met because an upstream failed, so "
            "the node is upstream_failed",
            "wait": "the rule is not decided yet",
        }[why.decision]
        if why.problem is None:
            console.print(f"  {verdict}")
        if why.waits_for and why.state == "pending":
            console.print(f"  waits for: {', '.join(why.waits_for)}")
    for cause in why.causes:
        console.print(f"  because {cause}")
    if why.error:
        console.print(f"  error: {why.error}")
    if why.waiting:
        console.print(Text(f"  {why.waiting}", style="bold yellow"))
    if why.children:
        console.print(f"  child runs ({len(why.children)}): {', '.join(why.children)}")
    if why.problem:
        console.print(Text(f"  {why.problem}", style="bold red"))


def print_versions(
    console: Console, versions: list[VersionInfo], current: Mapping[str, str] | None = None
) -> None:
    """The DAG versions live workers serve and running runs are pinned to; ``current``
    (``{DAG: version}`` of the code at hand) marks which version is that code's."""
    if not versions:
        console.print("no dagrq worker is running, and no run is running")
        return
    table = Table(title="DAG versions: live workers and running runs", title_justify="left")
    for column in ("DAG", "version", "workers", "busy", "hosts", "runs", "note"):
        table.add_column(column, no_wrap=column != "note")
    for v in versions:
        hosts = sorted({w.host or "?" for w in v.workers})
        note: list[Text] = []
        if current and current.get(v.dag) == v.version:
            note.append(Text("this code"))
        if v.runs and not v.workers:
            note.append(
                Text(
                    "no worker: its runs wait (start one, or `dagrq upgrade`)", style="bold yellow"
                )
            )
        table.add_row(
            v.dag,
            v.version,
            str(len(v.workers)),
            str(v.busy),
            ", ".join(hosts),
            str(v.runs),
            Text(" · ").join(note),
        )
    console.print(table)
