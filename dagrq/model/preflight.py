"""``dagrq plan``: what a DAG will cost, before any run and without Redis. Pure.

The command counts follow the Lua scripts line by line (their headers list every command);
``tests/test_preflight.py`` checks them against ``INFO commandstats`` on a real run.

Examples:
    >>> ARRIVAL_WAITING, ARRIVAL_FIRING
    (14, 21)
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import networkx as nx

from .commands import shown
from .plan import NodeSpec, Plan

#: complete.lua for one node before its children: EVALSHA, HGET run state, HMGET node state and
#: attempt, SET output, HSET state, XADD event, HINCRBY pending, EXPIRE run, EXPIRE nodes
COMPLETE_BASE = 9
#: per child: a waiting arrival (HGET state, HSETNX, HINCRBY, HMGET, EXPIRE)
CHILD_WAITING = 5
#: per child: the arrival that fires a join (the waiting five but EXPIRE, then RENAME, EXPIRE,
#: HSET state, XADD, HSET RQ job, RPUSH, and RPUSH + LTRIM of the queue's doorbell)
CHILD_FIRING_JOIN = 12
#: per child with one parent: HGET state, HSET state, XADD, HSET RQ job, RPUSH, RPUSH, LTRIM
CHILD_FIRING_SINGLE = 7
#: start.lua: EVALSHA, HGET run, HGET node, HSET, HINCRBY, EXPIRE, XADD, HMGET, EXISTS inputs
START_BASE = 9
#: RQ's own commands for one job on a worker (dequeue, registries, heartbeats, result):
#: measured with plain no-op jobs (benchmarks/join_cost.py: 24,579 commands for 402 jobs)
RQ_PER_JOB = 61
#: the arrival step at a join, one complete.lua call with this one child
ARRIVAL_WAITING = COMPLETE_BASE + CHILD_WAITING
ARRIVAL_FIRING = COMPLETE_BASE + CHILD_FIRING_JOIN
#: bytes in Redis per node of a finished run, without its output: RQ's job hash (~2,000) and
#: its results stream (~4,700), the node's fields (~200); measured with MEMORY USAGE on
#: tests/pipelines/diamond.py (Redis 6.2)
BYTES_PER_NODE = 6_900
#: bytes in Redis per run: the event stream (~4,700), the run hash and the nodes hash
BYTES_PER_RUN = 5_800


@dataclass
class Preflight:
    """The pre-flight report of one DAG."""

    dag: str
    nodes: int
    edges: int
    joins: dict[str, tuple[int, str]]  # join -> (fan-in width, trigger rule)
    maps: dict[str, tuple[str, int]]  # mapped node -> (source, chunk)
    branches: dict[str, list[str]]  # branch -> the children it chooses from
    programs: dict[str, str]  # command node -> its program, as a person reads it
    queues: dict[str, list[str]]
    critical_path: list[str]
    max_parallelism: int
    parallelism_exact: bool
    params: dict[str, str]
    commands: dict[str, int] = field(default_factory=dict)
    bytes_per_run: int = 0
    #: node -> its flow control as text (``concurrency 3 · pool warehouse (1 slot)``), and the
    #: DAG's max_active_runs
    limits: dict[str, str] = field(default_factory=dict)
    max_active_runs: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (``dagrq plan --json``): joins as ``{join: {"in":
        width, "rule": rule}}``, maps as ``{node: {"over": source, "chunk": n}}``, the rest as
        the fields are."""
        out = asdict(self)
        out["joins"] = {j: {"in": w, "rule": r} for j, (w, r) in self.joins.items()}
        out["maps"] = {m: {"over": src, "chunk": c} for m, (src, c) in self.maps.items()}
        return out

    def lines(self) -> list[str]:
        """The report as text lines."""
        out = [f"DAG {self.dag}: {self.nodes} nodes, {self.edges} edges"]
        if self.params:
            out.append("run parameters: " + ", ".join(f"{k}: {v}" for k, v in self.params.items()))
        out.append(f"joins ({len(self.joins)}):")
        out += [f"  {j:<16} fan-in {w:>3}   {rule}" for j, (w, rule) in self.joins.items()]
        if self.maps:
            out.append(f"maps ({len(self.maps)}):")
            out += [f"  {m:<16} over {src}, chunk {c}" for m, (src, c) in self.maps.items()]
        if self.programs:
            out.append(f"command nodes ({len(self.programs)}):")
            out += [f"  {c:<16} runs {line}" for c, line in self.programs.items()]
        if self.limits or self.max_active_runs:
            out.append(f"flow control ({len(self.limits)} nodes):")
            if self.max_active_runs:
                out.append(f"  max_active_runs {self.max_active_runs}: more runs wait queued")
            out += [f"  {n:<16} {text}" for n, text in self.limits.items()]
        if self.branches:
            out.append(f"branches ({len(self.branches)}):")
            out += [f"  {b:<16} chooses among {', '.join(cs)}" for b, cs in self.branches.items()]
        out.append("queues:")
        out += [f"  {q:<28} {abridged(ns, ', ')}" for q, ns in self.queues.items()]
        out.append(
            f"critical path: {len(self.critical_path)} nodes "
            f"({abridged(self.critical_path, ' -> ')})"
        )
        how = (
            "widest antichain"
            if self.parallelism_exact
            else f"at least: the widest layer; the exact widest antichain is computed up to "
            f"{EXACT_WIDTH_NODES:,} nodes"
        )
        out.append(f"max parallelism: {self.max_parallelism} nodes at once ({how})")
        c = self.commands
        out.append("Redis commands (dagrq's scripts; Lua's inner calls counted):")
        out.append(
            f"  per join arrival: {c['arrival_waiting']} waiting, {c['arrival_firing']} "
            "when it fires the join (one round trip either way)"
        )
        out.append(
            f"  per run: {c['dagrq_per_run']} by dagrq + about {c['rq_per_run']} by RQ "
            f"({RQ_PER_JOB} per job) = {c['total_per_run']}"
            + (" before map items" if self.maps else "")
        )
        if self.maps:
            out.append(
                "  per map item: about "
                + ", ".join(f"{m}: {v}" for m, v in c.items() if m.startswith("item:"))
            )
        out.append(
            f"Redis memory per run: about {self.bytes_per_run:,} bytes plus the outputs"
            + (" and about 180 bytes per map item" if self.maps else "")
        )
        return out


def abridged(names: list[str], sep: str, keep: int = 6) -> str:
    """``names`` joined by ``sep``; past ``2 * keep`` names, the middle ones are counted, not
    listed.

    Examples:
        >>> abridged([f"n{i}" for i in range(20)], " -> ", keep=2)
        'n0 -> n1 -> ... (16 more) -> n18 -> n19'
    """
    if len(names) <= 2 * keep:
        return sep.join(names)
    middle = f"... ({len(names) - 2 * keep:,} more)"
    return sep.join([*names[:keep], middle, *names[-keep:]])


def preflight(plan: Plan, params: dict[str, str]) -> Preflight:
    """Compute the report for ``plan`` (``params`` maps run parameters to type names)."""
    graph = plan.graph
    specs = plan.specs
    queues: dict[str, list[str]] = {}
    for spec in specs.values():
        queues.setdefault(spec.queue_name, []).append(spec.name)
    commands = _commands(plan)
    exact = graph.number_of_nodes() <= EXACT_WIDTH_NODES
    width = max_antichain(graph) if exact else widest_layer(graph)
    return Preflight(
        dag=plan.dag,
        nodes=graph.number_of_nodes(),
        edges=graph.number_of_edges(),
        joins={s.name: (len(s.parents), s.rule) for s in specs.values() if s.is_join},
        maps={s.name: (s.map_over, s.chunk) for s in specs.values() if s.map_over},
        branches={s.name: list(s.children) for s in specs.values() if s.branch},
        programs={s.name: shown(s.command, s.image) for s in specs.values() if s.command},
        queues=dict(sorted(queues.items())),
        critical_path=nx.dag_longest_path(graph),
        max_parallelism=width,
        parallelism_exact=exact,
        params=params,
        commands=commands,
        bytes_per_run=BYTES_PER_RUN + BYTES_PER_NODE * len(specs),
        limits={s.name: text for s in specs.values() if (text := limits_text(s))},
        max_active_runs=plan.max_active_runs,
    )


def limits_text(spec: NodeSpec) -> str:
    """A node's flow control in one line (empty for none).

    Examples:
        >>> limits_text(NodeSpec(name="n", concurrency=2, concurrency_key="tenant",
        ...                      rate_limit="100/m", priority=5))
        'concurrency 2 per tenant · rate limit 100/m · priority 5'
    """
    parts = []
    if spec.concurrency is not None:
        key = f" per {spec.concurrency_key}" if spec.concurrency_key else ""
        parts.append(f"concurrency {spec.concurrency}{key}")
    if spec.pool is not None:
        slots = f"{spec.pool_slots} slot" + ("s" if spec.pool_slots != 1 else "")
        parts.append(f"pool {spec.pool} ({slots})")
    if spec.rate_limit:
        parts.append(f"rate limit {spec.rate_limit}")
    if spec.priority:
        parts.append(f"priority {spec.priority}")
    return " · ".join(parts)


#: graphs up to this many nodes get the exact widest antichain (a matching on the transitive
#: closure, which grows with the square of the nodes); larger ones the widest layer, O(V+E)
EXACT_WIDTH_NODES = 500


def widest_layer(graph: nx.DiGraph) -> int:
    """The most nodes in one topological generation (nodes whose longest path from a root has
    the same length): an antichain, so a lower bound of the widest one; O(V+E).

    Examples:
        >>> widest_layer(nx.DiGraph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]))
        2
    """
    return max((len(g) for g in nx.topological_generations(graph)), default=0)


def max_antichain(graph: nx.DiGraph) -> int:
    """The size of the widest antichain (most nodes that can run at once), by Dilworth:
    nodes minus a maximum matching in the transitive closure's split graph.

    Examples:
        >>> max_antichain(nx.DiGraph([("a", "b"), ("a", "c"), ("b", "d"), ("c", "d")]))
        2
    """
    if graph.number_of_nodes() == 0:
        return 0
    closure = nx.transitive_closure_dag(graph)
    split: nx.Graph = nx.Graph()
    left = [("out", n) for n in graph]
    split.add_nodes_from(left, bipartite=0)
    split.add_nodes_from((("in", n) for n in graph), bipartite=1)
    split.add_edges_from((("out", u), ("in", v)) for u, v in closure.edges)
    matching = nx.bipartite.hopcroft_karp_matching(split, top_nodes=left)
    return int(graph.number_of_nodes() - len(matching) // 2)


def _commands(plan: Plan) -> dict[str, int]:
    specs = plan.specs
    dagrq_total = 0.0
    out: dict[str, Any] = {}
    for spec in specs.values():
        cost: float = START_BASE + len(spec.data_parents) * (2 if spec.is_join else 1)
        cost += COMPLETE_BASE + (1 if spec.is_join else 0)
        for child in spec.children:
            c = specs[child]
            if len(c.parents) == 1:
                cost += CHILD_FIRING_SINGLE
            else:  # parents arrive one by one; one of them fires it
                cost += (CHILD_FIRING_JOIN + CHILD_WAITING * (len(c.parents) - 1)) / len(c.parents)
        dagrq_total += cost
        if spec.map_over is not None:
            # per item: its share of a chunk job (RQ + the items.lua call) plus the result
            out[f"item:{spec.name}"] = round((RQ_PER_JOB + 12) / spec.chunk + 3)
    submit = 6 + 4 * len(specs)  # MULTI/EXEC, plan, run hash, nodes, events, RQ job hashes
    dagrq_int = round(dagrq_total) + submit
    rq_total = RQ_PER_JOB * len(specs)
    out.update(
        arrival_waiting=ARRIVAL_WAITING,
        arrival_firing=ARRIVAL_FIRING,
        dagrq_per_run=dagrq_int,
        rq_per_run=rq_total,
        total_per_run=dagrq_int + rq_total,
    )
    return out
