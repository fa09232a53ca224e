"""The validated plan of a DAG: what a run is pinned to. Pure data; JSON in Redis.

At submit, the plan (nodes, edges, options) is stored once per DAG version under its content
hash. Workers check that the DAG they loaded has the run's hash, and ``Run.status``,
``dagrq why`` and ``run.resume()`` read the graph from the stored plan, so they need no code.

Examples:
    >>> spec = NodeSpec(name="j", parents=("a", "b"), data_parents=("a",), queue_name="q",
    ...                 is_join=True, rule="all_done", result_ttl=60)
    >>> plan = Plan("demo", "json", 60, {"j": spec})
    >>> Plan.from_json(plan.to_json()) == plan
    True
    >>> len(plan.hash)
    16
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import cached_property
from typing import Any

import networkx as nx

from .objects import OutputStore
from .options import Retry
from .queues import versioned_queue


@dataclass(frozen=True, kw_only=True)
class NodeSpec:
    """What validation derives for one node; what the runtime, the plan and the CLI use.

    Built by keyword only; every field but ``name`` has a default, so a test spells only what
    it cares about.

    Attributes:
        parents: every upstream node (data and order-only), sorted.
        data_parents: upstream nodes whose output this node receives, sorted.
        children: downstream nodes, sorted.
        params: run parameters this node takes.
        queue_name: the RQ queue the node runs on.
        is_join: two or more upstream edges.
        rule: the trigger rule, as text (``all_success``, ``quorum:2``...).
        timeout: seconds per attempt, or None for no limit.
        retry: extra attempts and backoff, or None.
        result_ttl: seconds the node's output is kept.
        map_over: for a mapped node (``@dag.map``), the parent whose output it maps over.
        chunk: items per RQ job of a mapped node.
        max_output_bytes: the largest serialized output (per item, for a mapped node).
        branch: a branch (``@dag.branch``): it returns the children to follow.
        returns: the stored output's type as text (:func:`dagrq.model.codec.type_expr`) when it is
            made of standard types: a reader without the DAG's code decodes into it.
        command: a command node's argv (shown by ``dagrq plan`` and ``why``; a worker runs
            the argv of the DAG it loaded, never this copy).
        image: a command node's container image, if any.
        concurrency, concurrency_key, pool, pool_slots, rate_limit, priority: the node's
            flow control (:mod:`dagrq.model.flow`); left out of the stored plan when unset,
            so a DAG without limits keeps its version.
        cache, cache_ttl, code_version, cache_custom: output caching (:mod:`dagrq.model.cache`):
            whether the node is cached, its entries' lifetime, its code version in the key,
            and whether a ``cache_key=`` function makes the inputs' part; left out when unset.
        wait: what a waiting node waits for (:class:`~dagrq.model.waits.Waiting` as JSON
            text): a signal, a sleep, a sensor's pokes, a sub-DAG's child runs.
        start_after, not_before: the node's start delay in seconds, and the run parameter
            it starts no sooner than (docs/waits.md); left out when unset.
    """

    name: str
    parents: tuple[str, ...] = ()
    data_parents: tuple[str, ...] = ()
    children: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    queue_name: str = "dagrq"
    is_join: bool = False
    rule: str = "all_success"
    timeout: int | None = None
    retry: Retry | None = None
    result_ttl: int = 24 * 3600
    map_over: str | None = None
    chunk: int = 1
    max_output_bytes: int = 10 * 2**20
    branch: bool = False
    returns: str | None = None
    command: tuple[str, ...] | None = None
    image: str | None = None
    concurrency: int | None = None
    concurrency_key: str | None = None
    pool: str | None = None
    pool_slots: int = 1
    rate_limit: str | None = None
    priority: int = 0
    cache: bool = False
    cache_ttl: int | None = None
    code_version: str | None = None
    cache_custom: bool = False
    wait: str | None = None
    start_after: float | None = None
    not_before: str | None = None

    @property
    def parks(self) -> bool:
        """Whether an attempt may park (a wait, a sensor, a delayed start): its RQ job is
        kept as long as the run, to be run again when the wait ends."""
        return self.wait is not None or bool(self.start_after) or self.not_before is not None

    @property
    def limited(self) -> bool:
        """Whether a worker must check a limit before the node runs (a priority alone is
        not one: it orders the queue)."""
        return self.concurrency is not None or self.pool is not None or bool(self.rate_limit)

    @property
    def starts_at_submit(self) -> bool:
        """Enqueued when the run is submitted: a root, or a node with the ``always`` rule
        (which, as in Airflow, does not wait for its parents: it reads none of them)."""
        return not self.parents or self.rule == "always"

    def chunks(self, total: int) -> int:
        """How many chunk jobs a mapped node of ``total`` items runs in.

        Examples:
            >>> NodeSpec(name="m", chunk=100).chunks(250), NodeSpec(name="m").chunks(0)
            (3, 0)
        """
        return -(-total // self.chunk)

    def chunk_of(self, index: int) -> int:
        """The chunk that holds item ``index``."""
        return index // self.chunk

    def chunk_items(self, chunk: int, total: int | None = None) -> range:
        """The items chunk ``chunk`` holds (cut at ``total`` when given).

        Examples:
            >>> NodeSpec(name="m", chunk=100).chunk_items(2, total=250)
            range(200, 250)
        """
        first = chunk * self.chunk
        last = first + self.chunk
        return range(first, last if total is None else min(total, last))

    @property
    def retries(self) -> int:
        """Extra attempts ``retry=`` allows (0 without)."""
        return self.retry.max if self.retry else 0

    @property
    def chunk_retry(self) -> Retry | None:
        """The ``retry=`` of one chunk job of this mapped node: the node's own when a chunk is
        one item; else none (a chunk's failed items are retried one by one, each in a job of
        its own)."""
        return self.retry if self.chunk == 1 else None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        out = asdict(self)
        out["retry"] = self.retry.model_dump() if self.retry else None
        for name, default in _OPTIONAL_DEFAULTS.items():  # unset: as before those options
            if out[name] == default:
                del out[name]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> NodeSpec:
        """The inverse of :meth:`to_dict`."""
        fields = dict(data)
        for key in ("parents", "data_parents", "children", "params"):
            fields[key] = tuple(fields[key])
        fields["retry"] = Retry(**fields["retry"]) if fields.get("retry") else None
        return cls(**fields)


#: the fields of later options and their defaults (left out of a stored plan when unset, so
#: a DAG that does not use them keeps its version)
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "concurrency": None,
    "concurrency_key": None,
    "pool": None,
    "pool_slots": 1,
    "rate_limit": None,
    "priority": 0,
    "cache": False,
    "cache_ttl": None,
    "code_version": None,
    "cache_custom": False,
    "wait": None,
    "start_after": None,
    "not_before": None,
}


@dataclass(frozen=True)
class Plan:
    """A DAG's validated shape and options, keyed by content hash (its version)."""

    dag: str
    serializer: str
    ttl_s: int
    specs: dict[str, NodeSpec] = field(default_factory=dict)
    #: runs of this DAG that may run at once (``DAG(max_active_runs=)``); None for no limit
    max_active_runs: int | None = None
    #: the event a successful run emits (``DAG(emits=)``), or None
    emits: str | None = None
    #: the DAG has alert hooks: its runs tell its hook stream (docs/observability.md)
    hooks: bool = False
    #: where values over its threshold are kept instead of Redis (``DAG(output_store=)``)
    output_store: OutputStore | None = None

    def to_json(self) -> str:
        """Deterministic JSON: sorted keys, nodes in topological order (computed once: a
        plan is frozen, and every submit stores it)."""
        return self._json

    @cached_property
    def _json(self) -> str:
        data: dict[str, Any] = {
            "dag": self.dag,
            "serializer": self.serializer,
            "ttl_s": self.ttl_s,
            "nodes": [s.to_dict() for s in self.specs.values()],
        }
        if self.max_active_runs is not None:
            data["max_active_runs"] = self.max_active_runs
        if self.emits is not None:
            data["emits"] = self.emits
        if self.hooks:
            data["hooks"] = True
        if self.output_store is not None:
            data["output_store"] = [self.output_store.url, self.output_store.over]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Read a plan stored by :meth:`to_json`."""
        data = json.loads(text)
        specs = {n["name"]: NodeSpec.from_dict(n) for n in data["nodes"]}
        limit, store = data.get("max_active_runs"), data.get("output_store")
        return cls(
            data["dag"],
            data["serializer"],
            int(data["ttl_s"]),
            specs,
            limit,
            data.get("emits"),
            bool(data.get("hooks")),
            None if store is None else OutputStore(store[0], int(store[1])),
        )

    @cached_property
    def hash(self) -> str:
        """The first 16 hex digits of the SHA-256 of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @property
    def flow_controlled(self) -> bool:
        """Whether a run of this plan counts against a limit shared with other runs
        (``max_active_runs``, a node's concurrency, pool or rate limit)."""
        return self.max_active_runs is not None or any(n.limited for n in self.specs.values())

    def differences(self, other: Plan) -> list[str]:
        """Why a run of this version cannot go on as a run of ``other``: a changed graph
        (nodes, edges, which parents pass data, maps, chunks, branches), DAG name or
        serializer. Empty when it can: code, queues, retries, timeouts, rules and TTLs may
        differ (a rule applies to arrivals still to come).

        Examples:
            >>> a = Plan("d", "json", 60, {"x": NodeSpec(name="x")})
            >>> b = Plan("d", "json", 60, {"x": NodeSpec(name="x", timeout=5)})
            >>> a.differences(b)
            []
            >>> a.differences(Plan("d", "json", 60, {"y": NodeSpec(name="y")}))
            ['nodes added: y', 'nodes removed: x']
        """
        out = [
            f"{what} {mine!r} -> {theirs!r}"
            for what, mine, theirs in (
                ("DAG", self.dag, other.dag),
                ("serializer", self.serializer, other.serializer),
            )
            if mine != theirs
        ]
        added, removed = (
            sorted(set(other.specs) - set(self.specs)),
            sorted(set(self.specs) - set(other.specs)),
        )
        out += [f"nodes added: {', '.join(added)}"] if added else []
        out += [f"nodes removed: {', '.join(removed)}"] if removed else []
        for name in sorted(set(self.specs) & set(other.specs)):
            mine, theirs = self.specs[name], other.specs[name]
            for field_name in ("parents", "data_parents", "map_over", "chunk", "branch"):
                before, after = getattr(mine, field_name), getattr(theirs, field_name)
                if before != after:
                    out.append(f"node {name}: {field_name} {before!r} -> {after!r}")
        return out

    def followed(self, branch: str, chosen: Sequence[str]) -> tuple[str, ...]:
        """The children a branch follows when it chose ``chosen``: those, and any other child
        downstream of one of them (Airflow's "empty branch": a join of the branch and a chosen
        child runs). Every other child is skipped outright, whatever its trigger rule, as
        Airflow's ``skip_all_except`` does.

        Examples:
            >>> plan = Plan("d", "json", 60, {
            ...     "b": NodeSpec(name="b", children=("join", "x", "y"), branch=True),
            ...     "x": NodeSpec(name="x", parents=("b",), children=("join",)),
            ...     "y": NodeSpec(name="y", parents=("b",)),
            ...     "join": NodeSpec(name="join", parents=("b", "x")),
            ... })
            >>> plan.followed("b", ["x"])
            ('join', 'x')
        """
        picked = set(chosen)
        below = set().union(*(nx.descendants(self.graph, c) for c in picked)) if picked else set()
        return tuple(c for c in self.specs[branch].children if c in picked or c in below)

    def rq_queue(self, queue_name: str) -> str:
        """The RQ queue where a node of queue ``queue_name`` waits in runs of this version
        (see :func:`dagrq.model.queues.versioned_queue`)."""
        return versioned_queue(queue_name, self.hash)

    @cached_property
    def rq_queues(self) -> list[str]:
        """Every RQ queue of this version, in the order of first use."""
        return list(dict.fromkeys(self.rq_queue(s.queue_name) for s in self.specs.values()))

    @cached_property
    def graph(self) -> nx.DiGraph:
        """The plan's graph (nodes and every edge)."""
        g: nx.DiGraph = nx.DiGraph()
        g.add_nodes_from(self.specs)
        g.add_edges_from((p, s.name) for s in self.specs.values() for p in s.parents)
        return g

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Plan) and self.to_json() == other.to_json()

    def __hash__(self) -> int:
        return hash(self.hash)
