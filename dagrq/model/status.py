"""What a run looks like at one moment, and why a node is where it is. Pure: no Redis.

:func:`parse_status` turns the two hashes a run keeps (the run's meta and its per-node fields)
into a :class:`RunStatus`; :func:`explain` answers ``dagrq why`` from a status alone. Both are
shared by the client, the CLI views and the pictures, and tested as tables without a server.

Examples:
    >>> from dagrq.model.plan import NodeSpec, Plan
    >>> plan = Plan("d", "json", 60, {
    ...     "a": NodeSpec(name="a", children=("b",)),
    ...     "b": NodeSpec(name="b", parents=("a",), data_parents=("a",)),
    ... })
    >>> meta = {"dag": "d", "state": "running", "created_at": "1.0", "nodes": '["a", "b"]'}
    >>> status = parse_status("r1", meta, {"a:state": "running", "b:state": "pending"}, plan)
    >>> status.nodes["b"].waits_for
    ['a']
    >>> explain(status, "b").decision
    'wait'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from ..errors import NoResult
from .commands import shown
from .plan import Plan
from .rules import Decision, decide
from .waits import timer_reason

#: node states; the last five are final
NODE_STATES = (
    "pending",
    "queued",
    "waiting",
    "running",
    "succeeded",
    "cached",
    "failed",
    "upstream_failed",
    "skipped",
    "canceled",
)
FINAL_NODE_STATES = frozenset(
    {"succeeded", "cached", "failed", "upstream_failed", "skipped", "canceled"}
)
#: the outcomes a node of an ended run can be marked with by hand (``Run.mark``)
MARKS = ("succeeded", "skipped")
#: the node states that count as a success for every rule (``cached``: its output was kept
#: from an earlier run with the same code and inputs; the body did not run)
SUCCESS_STATES = frozenset({"succeeded", "cached"})
#: what a parent can deliver to a child (the four counters of a join)
ARRIVALS = ("succeeded", "failed", "skipped", "upstream_failed")
#: run states; ``queued`` (waiting for its DAG's ``max_active_runs``) and ``running`` are live,
#: every other is final
RUN_STATES = ("queued", "running", "succeeded", "failed", "canceled")
#: what ``dagrq runs --state`` takes: a run state, or ``waiting`` (running, with a node
#: waiting for a signal, a timer, a sensor's next poke, child runs or a limit)
RUN_FILTERS = (*RUN_STATES, "waiting")
#: the run states of a run that has not ended
LIVE_RUN_STATES = frozenset({"queued", "running"})
#: fill colour per node state (Okabe-Ito: distinguishable with every common colour blindness),
#: shared by DOT, Mermaid and the terminal views
STATE_COLORS: dict[str, str] = {
    "pending": "#FFFFFF",
    "queued": "#56B4E9",
    "waiting": "#BBBBBB",
    "running": "#0072B2",
    "succeeded": "#009E73",
    "cached": "#7FCDB5",
    "failed": "#D55E00",
    "upstream_failed": "#E69F00",
    "skipped": "#F0E442",
    "canceled": "#CC79A7",
}
#: a shape per state, so that no state is told by its colour alone (the web view's badges,
#: graph nodes and grid cells); characters every common sans-serif font has
STATE_GLYPHS: dict[str, str] = {
    "pending": "\u25cb",  # ○
    "queued": "\u25f7",  # ◷
    "waiting": "\u2016",  # ‖
    "running": "\u25b6",  # ▶
    "succeeded": "\u2713",  # ✓
    "cached": "\u25c6",  # ◆
    "failed": "\u2717",  # ✗
    "upstream_failed": "\u26a0",  # ⚠
    "skipped": "\u21b7",  # ↷
    "canceled": "\u25a0",  # ■
}


class NodeStatus(BaseModel):
    """One node of one run, as ``Run.status()`` reports it."""

    state: str
    queue: str | None = None
    attempts: int = 0
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    #: where the last attempt ran: ``<host>:<pid>``
    worker: str | None = None
    #: a command node's program, as a person reads it
    command: str | None = None
    #: why it was skipped, when it said so itself (``raise dagrq.Skip("...")``)
    reason: str | None = None
    #: for a branch that ran: the children it chose
    chosen: list[str] | None = None
    #: every failed attempt's own error, oldest first: ``{attempt, error, traceback}`` (a
    #: retried attempt's error is kept when the next attempt starts)
    attempt_errors: list[dict[str, Any]] = []
    rule: str | None = None
    parents: list[str] = []
    waits_for: list[str] = []
    items: dict[str, int] | None = None
    #: why a ``waiting`` node waits: a limit's reason (``pool warehouse: 5 of 5 slots taken``)
    waiting: str | None = None
    #: a ``cached`` node's: the run its output was kept from
    cached_from: str | None = None
    #: times a waiting node parked (docs/waits.md): its attempts include one check per park
    parks: int = 0
    #: a sub-DAG node's child runs, in item order
    children: list[str] = []

    @property
    def duration_s(self) -> float | None:
        """Seconds from the last attempt's start to the end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)


class RunStatus(BaseModel):
    """A run's state and every node's state at one moment."""

    id: str
    dag: str
    state: str
    created_at: float
    ended_at: float | None = None
    params: dict[str, Any] = {}
    nodes: dict[str, NodeStatus] = {}
    #: why the run's state could not be repaired, when the reconciler ended it for that
    damaged: str | None = None
    #: the DAG version (plan hash) the run is pinned to
    version: str | None = None
    #: queues where nodes of this run wait and no live worker of the run's version listens
    #: (read by ``Run.status()`` while the run runs)
    unserved: list[str] = []
    #: the name given at submit (``--name``), and its tags (``--tag``)
    name: str | None = None
    tags: list[str] = []
    #: how it started: ``manual``, ``schedule <dag>:<name> @ <tick>``, ``backfill <id> @ <tick>``
    trigger: str = "manual"
    #: the priority given at submit (added to every node's)
    priority: int = 0
    #: a child run's parent: ``<run id> <node>`` (a sub-DAG node of that run)
    parent: str | None = None

    def waiting_note(self, queue: str | None) -> str | None:
        """What a node waiting on ``queue`` waits for, when no live worker serves it."""
        if queue is None or queue not in self.unserved:
            return None
        return (
            f"waiting for a worker that serves version {self.version} of DAG {self.dag!r} "
            f"(none listens on queue {queue}; `dagrq workers` lists the versions served)"
        )

    @property
    def done(self) -> bool:
        """True when the run has ended (any state but ``queued`` and ``running``)."""
        return self.state not in LIVE_RUN_STATES

    def counts(self) -> dict[str, int]:
        """How many nodes are in each state."""
        out = dict.fromkeys(NODE_STATES, 0)
        for node in self.nodes.values():
            out[node.state] = out.get(node.state, 0) + 1
        return out

    def failed(self) -> dict[str, str]:
        """``{node: one-line error}`` of the failed nodes."""
        return {n: s.error or "failed" for n, s in self.nodes.items() if s.state == "failed"}

    @property
    def reexecuted(self) -> int:
        """Bodies run more than once so far: every attempt of a node past its first, and every
        item execution past one per item. Retries of failures count, and so do re-runs after a
        lost worker: dagrq runs a body at least once, and says how often it ran more."""
        extra = 0
        for node in self.nodes.values():
            extra += max(0, node.attempts - 1 - node.parks)  # a wait's checks are planned
            if node.items is not None:
                extra += max(0, node.items["executions"] - node.items["total"])
        return extra


class Explanation(BaseModel):
    """One node explained (``Run.explain``, ``dagrq why``).

    ``decision`` is what the node's rule says given the parents that have ended: ``fire``,
    ``skip`` (can no longer be met) or ``wait``.
    """

    node: str
    state: str
    rule: str
    parents: dict[str, str]
    #: what each parent that ended delivered: its state, but ``skipped`` from a branch that
    #: did not choose this node
    arrived: dict[str, str]
    decision: Decision
    waits_for: list[str]
    error: str | None = None
    #: what led here, in words: a Skip's reason, a branch not taken, an upstream failure
    causes: list[str] = []
    #: something is wrong beyond the rule: the run's state is damaged, or the rule is decided
    #: but the node was never moved on (``dagrq reconcile`` repairs that)
    problem: str | None = None
    #: a queued node that no live worker of the run's version would take
    waiting: str | None = None
    #: a command node's program
    command: str | None = None
    #: a sub-DAG node's child runs (``dagrq status CHILD``)
    children: list[str] = []


def parse_status(
    run_id: str, meta: Mapping[str, str], fields: Mapping[str, str], plan: Plan | None
) -> RunStatus:
    """A :class:`RunStatus` from a run's meta hash and its node-state hash (decoded).

    Args:
        run_id: the run's id.
        meta: the run hash (``dag``, ``state``, ``created_at``, ``params``, ``nodes``...).
        fields: the nodes hash, ``<node>:<attribute> -> value``.
        plan: the run's plan when it can be read: gives each node its rule, parents and, for
            a pending node, the parents it still waits for.
    """
    per_node: dict[str, dict[str, str]] = {n: {} for n in json.loads(meta.get("nodes", "[]"))}
    for key, value in fields.items():
        name, _, attr = key.rpartition(":")
        per_node.setdefault(name, {})[attr] = value
    nodes = {name: _node_status(f) for name, f in per_node.items()}
    if plan is not None:
        for name, node in nodes.items():
            spec = plan.specs.get(name)
            if spec is None:
                continue
            node.rule, node.parents = spec.rule, list(spec.parents)
            if spec.command is not None:
                node.command = shown(spec.command, spec.image)
            if node.state == "pending":
                node.waits_for = [
                    p for p in spec.parents if nodes[p].state not in FINAL_NODE_STATES
                ]
    return RunStatus(
        id=run_id,
        dag=meta["dag"],
        state=meta["state"],
        created_at=float(meta["created_at"]),
        ended_at=_float(meta.get("ended_at")),
        params=json.loads(meta.get("params", "{}")),
        nodes=nodes,
        damaged=meta.get("damaged"),
        version=meta.get("plan"),
        name=meta.get("name") or None,
        tags=json.loads(meta.get("tags", "[]")),
        priority=int(meta.get("priority") or 0),
        trigger=meta.get("trigger") or "manual",
        parent=_parent(meta.get("parent")),
    )


def _parent(field: str | None) -> str | None:
    """``<run id> <node>`` from a child run's ``parent`` field (JSON), or None."""
    if not field:
        return None
    link = json.loads(field)
    return f"{link.get('run', '?')} {link.get('node', '?')}"


class RunSummary(BaseModel):
    """One line of ``dagrq runs`` / ``Run.list``: a run without its nodes.

    ``done`` counts nodes that have ended, of ``total``.
    """

    id: str
    dag: str
    state: str
    created_at: float
    ended_at: float | None = None
    name: str | None = None
    tags: list[str] = []
    params: dict[str, Any] = {}
    done: int = 0
    total: int = 0
    #: how it started (see :attr:`RunStatus.trigger`)
    trigger: str = "manual"
    #: for ``--state waiting``: ``<node>: <what it waits for>`` of its first waiting node
    waiting: str | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from submit to the end (None while running)."""
        return None if self.ended_at is None else max(0.0, self.ended_at - self.created_at)


#: the run-hash fields a :class:`RunSummary` reads
SUMMARY_FIELDS = (
    "dag",
    "state",
    "created_at",
    "ended_at",
    "name",
    "tags",
    "params",
    "pending",
    "nodes",
    "trigger",
)


def parse_summary(run_id: str, values: list[str | None]) -> RunSummary | None:
    """A :class:`RunSummary` from the run hash's :data:`SUMMARY_FIELDS` (decoded, in that
    order); None when the run is gone.

    Examples:
        >>> raw = ["d", "running", "1.0", None, None, None, "{}", "1", '["a","b"]', None]
        >>> s = parse_summary("r", raw)
        >>> s.state, s.done, s.total, s.duration_s
        ('running', 1, 2, None)
    """
    meta = dict(zip(SUMMARY_FIELDS, values, strict=True))
    if meta["dag"] is None or meta["created_at"] is None:
        return None
    total = len(json.loads(meta["nodes"] or "[]"))
    return RunSummary(
        id=run_id,
        dag=meta["dag"],
        state=meta["state"] or "running",
        created_at=float(meta["created_at"]),
        ended_at=_float(meta["ended_at"]),
        name=meta["name"] or None,
        tags=json.loads(meta["tags"] or "[]"),
        params=json.loads(meta["params"] or "{}"),
        done=max(0, total - int(meta["pending"] or 0)),
        total=total,
        trigger=meta["trigger"] or "manual",
    )


def _node_status(f: Mapping[str, str]) -> NodeStatus:
    state = f.get("state", "pending")
    chosen = f.get("chosen")
    return NodeStatus(
        state=state,
        queue=f.get("queue"),
        attempts=int(f.get("attempts", 0)),
        queued_at=_float(f.get("queued")),
        started_at=_float(f.get("started")),
        ended_at=_float(f.get("ended")),
        error=f.get("error") or (f.get("last_error") if state != "succeeded" else None),
        traceback=f.get("traceback"),
        worker=f.get("worker"),
        reason=f.get("reason"),
        waiting=_waiting_for(f) if state == "waiting" else None,
        cached_from=f.get("cached_from") if state == "cached" else None,
        parks=int(f.get("parks", 0)),
        chosen=[c for c in chosen.split(",") if c] if chosen is not None else None,
        items=item_counts(f),
        attempt_errors=attempt_errors(f),
    )


def _waiting_for(f: Mapping[str, str]) -> str | None:
    """What a ``waiting`` node waits for: its reason; a timer set when it fired says when."""
    reason = f.get("waiting")
    if reason == "timer" and f.get("due"):
        return timer_reason(int(f["due"]) / 1000)
    return reason


def attempt_errors(fields: Mapping[str, str]) -> list[dict[str, Any]]:
    """A node's failed attempts from its fields (``err@<n>``, ``tb@<n>``), oldest first.

    Examples:
        >>> found = attempt_errors({"err@2": "ValueError: b", "err@1": "ValueError: a"})
        >>> [(a["attempt"], a["error"]) for a in found]
        [(1, 'ValueError: a'), (2, 'ValueError: b')]
    """
    found = [(int(k[4:]), v) for k, v in fields.items() if k.startswith("err@") and k[4:].isdigit()]
    return [
        {"attempt": n, "error": error, "traceback": fields.get(f"tb@{n}") or None}
        for n, error in sorted(found)
    ]


def item_counts(fields: Mapping[str, str]) -> dict[str, int] | None:
    """A mapped node's item counts, or None for a node that is not mapped (or not expanded
    yet): ``total``, ``queued``, ``running``, ``done`` (recorded), ``failed`` (recorded as
    failed), ``canceled`` (not done when the node was canceled: none of them runs) and
    ``executions`` (item runs begun, retries and re-runs after a lost worker included: more
    than ``total`` once any item ran twice).

    Examples:
        >>> counts = item_counts({"items_total": "10", "items_started": "12", "items_done": "4"})
        >>> counts["queued"], counts["running"], counts["done"], counts["executions"]
        (0, 6, 4, 12)
        >>> item_counts({"state": "canceled", "items_total": "10", "items_started": "6",
        ...              "items_done": "4"})["canceled"]
        6
    """
    if "items_total" not in fields:
        return None
    total = int(fields["items_total"])
    done = int(fields.get("items_done", 0))
    executions = int(fields.get("items_started", 0))
    begun = min(total, executions)
    canceled = fields.get("state") == "canceled"
    return {
        "total": total,
        "queued": 0 if canceled else max(0, total - begun),
        "running": 0 if canceled else max(0, begun - done),
        "done": done,
        "failed": int(fields.get("items_failed", 0)),
        "canceled": max(0, total - done) if canceled else 0,
        "executions": executions,
    }


def explain(status: RunStatus, node: str) -> Explanation:
    """Why ``node`` is in its state: its rule, its parents' outcomes, what it waits for.

    Raises:
        NoResult: when the run has no such node, or its plan could not be read.
    """
    info = status.nodes.get(node)
    if info is None:
        raise NoResult(f"run {status.id} has no node {node!r} (nodes: {', '.join(status.nodes)})")
    if info.rule is None:  # the run knows the node, its plan is not there to say more
        raise NoResult(
            f"run {status.id}: its plan (version {status.version} of DAG {status.dag!r}) is not "
            f"in this Redis, so node {node!r} cannot be explained; `dagrq reconcile {status.id}` "
            "ends the run failed with the damage named (a worker of that version stores the "
            "plan again)"
        )
    causes = [f"it raised Skip: {info.reason}"] if info.reason else []
    arrived, unchosen = _arrivals(status, node, info, causes)
    counts = {o: sum(1 for a in arrived.values() if a == o) for o in ARRIVALS}
    decision: Decision = (
        decide(info.rule, total=len(info.parents), **counts) if info.parents else "fire"
    )
    if unchosen:  # as Airflow's skip_all_except: the rule is not asked
        decision = "skip"
    problem = None
    if status.damaged:
        problem = f"the run's state is damaged: {status.damaged}"
    elif status.state == "running" and info.state == "pending" and decision not in ("wait",):
        problem = (
            f"the rule is decided ({decision}) but the node was never moved on: a delivery was "
            f"cut short or the run's state was edited; `dagrq reconcile {status.id}` repairs it"
        )
    return Explanation(
        node=node,
        state=info.state,
        rule=info.rule,
        parents={p: status.nodes[p].state for p in info.parents},
        arrived=arrived,
        decision=decision,
        waits_for=[p for p in info.parents if p not in arrived],
        error=info.error,
        causes=causes,
        problem=problem,
        waiting=_waiting(status, info),
        command=info.command,
        children=info.children,
    )


def _waiting(status: RunStatus, info: NodeStatus) -> str | None:
    """What a node that has not started waits for besides its parents: a limit (a
    ``waiting`` node's reason), its run's turn (a ``queued`` run), or a worker."""
    if info.state == "waiting":
        return f"waiting for {info.waiting}" if info.waiting else "waiting for a limit"
    if status.state == "queued" and info.state == "pending":
        return "the run is queued: its DAG's max_active_runs is reached (it starts in turn)"
    return status.waiting_note(info.queue) if _waits_in_queue(info) else None


def _arrivals(
    status: RunStatus, node: str, info: NodeStatus, causes: list[str]
) -> tuple[dict[str, str], bool]:
    """What each ended parent of ``node`` delivered to its rule (appending to ``causes``), and
    whether a branch did not follow it (then it is skipped whatever its rule)."""
    arrived: dict[str, str] = {}
    unchosen = False
    for p in info.parents:
        parent = status.nodes[p]
        if parent.state not in FINAL_NODE_STATES:
            continue
        got = "skipped" if parent.state == "canceled" else parent.state
        got = "succeeded" if got == "cached" else got
        if parent.chosen is not None and got == "succeeded" and node not in parent.chosen:
            got, unchosen = "skipped", True
            chose = ", ".join(parent.chosen) or "nothing"
            causes.append(f"branch {p} did not choose it (it chose {chose})")
        elif parent.state == "skipped":
            causes.append(f"{p} was skipped" + (f": {parent.reason}" if parent.reason else ""))
        elif parent.state == "upstream_failed":
            causes.append(f"{p} could not run: an upstream of it failed")
        elif parent.state == "failed":
            causes.append(f"{p} failed: {parent.error or 'failed'}")
        arrived[p] = got
    return arrived, unchosen


def _waits_in_queue(node: NodeStatus) -> bool:
    """True while a node's job (or a mapped node's item jobs) wait in a queue."""
    return node.state == "queued" or (node.items is not None and node.items["queued"] > 0)


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None
