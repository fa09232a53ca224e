"""Validating a DAG: its graph on networkx, its run parameters, and the spec of every node.

:func:`validate` turns a DAG's declared nodes into a :class:`Validated` (the graph, a
:class:`~dagrq.model.plan.NodeSpec` per node, the run parameters' model), or raises a
:class:`~dagrq.errors.DAGError` naming the node, the problem and the fix. Pure: no Redis.
A new node option is checked here (:class:`~dagrq.model.options.NodeOptions` checks its form;
this module checks it against the graph) and pinned in the spec.
"""

from __future__ import annotations

import difflib
import inspect
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, get_args, get_origin

import networkx as nx
from pydantic import BaseModel

from ..errors import (
    CycleError,
    DuplicateNodeError,
    NodeDefinitionError,
    NodeImportError,
    UnknownNodeError,
)
from . import commands, params
from .cache import code_version
from .codec import type_expr
from .flow import key_source
from .node import Node, stored_type
from .plan import NodeSpec
from .queues import join_queue_name
from .rules import parse_rule
from .wait_nodes import pinned_waiting
from .waits import body_waiting

#: keyword arguments of DAG.submit: a run parameter cannot be called so
RESERVED_PARAMS = frozenset(
    {"connection", "run_name", "run_tags", "priority", "refresh", "cache_store"}
)


@dataclass(frozen=True)
class Validated:
    """A valid DAG: its graph (edge attribute ``data`` False for ``after=``), a spec per
    node in a deterministic topological order, and its run parameters' pydantic model."""

    graph: nx.DiGraph
    specs: dict[str, NodeSpec]
    params_model: type[BaseModel]


def validate(
    name: str,
    nodes: Sequence[Node[Any, Any]],
    *,
    declared_params: Sequence[str] | None,
    queue_name: str,
    ttl_s: int,
    max_output_bytes: int,
    serializer: str = "json",
    cache: bool = False,
) -> Validated:
    """Validate a DAG's declared ``nodes``; nothing reaches Redis before this passes.

    Args:
        name: the DAG's name.
        nodes: its nodes, in declaration order.
        declared_params: the run parameters declared up front (``DAG(params=...)``), or None.
        queue_name: the queue of its non-join nodes.
        ttl_s: the default lifetime of a node's output.
        max_output_bytes: the default largest output.
        serializer: the DAG's serializer (a concurrency key read from a parent's output
            needs JSON: the server reads the field).
        cache: the DAG's default for a node's ``cache=``.

    Raises:
        DuplicateNodeError: two nodes share a name.
        UnknownNodeError: ``after=`` or ``@dag.map`` names no node, or a parameter is a slip
            of a node's name.
        CycleError: the edges loop; the message spells the cycle ``a -> b -> a``.
        NodeImportError: a node function a worker could not import by its dotted path.
        NodeDefinitionError: an empty DAG, a rule its parents cannot satisfy, or one run
            parameter with two different types.
    """
    if not nodes:
        raise NodeDefinitionError(f"DAG {name!r} has no nodes; decorate a function")
    seen: set[str] = set()
    for n in nodes:
        if n.name in seen:
            raise DuplicateNodeError(n.name, name)
        seen.add(n.name)
    by_name = {n.name: n for n in nodes}
    graph, uses = _graph(name, by_name, declared_params)
    try:
        cycle = nx.find_cycle(graph)
    except nx.NetworkXNoCycle:
        pass
    else:
        raise CycleError([u for u, _ in cycle] + [cycle[0][0]])
    for n in nodes:
        _check_rule(n, graph.in_degree(n.name))
        _check_branch(n, sorted(graph.successors(n.name)))
        _check_flow(n, sorted(graph.predecessors(n.name)), set(uses), serializer)
        if n.options.cache and n.branch:
            raise NodeDefinitionError(f"node {n.name!r}: a branch cannot be cached; drop cache=")
    model = params.params_model(name, uses)
    defaults = NodeSpec(
        name="", queue_name=queue_name, result_ttl=ttl_s, max_output_bytes=max_output_bytes
    )
    specs = _cached(_specs(name, by_name, graph, defaults), nodes, cache)
    return Validated(graph, _waiting(specs, by_name, set(uses)), model)


def _waiting(
    specs: dict[str, NodeSpec], nodes: Mapping[str, Node[Any, Any]], run_params: set[str]
) -> dict[str, NodeSpec]:
    """``specs`` with what each node waits for pinned (:func:`pinned_waiting`)."""
    return {n: pinned_waiting(nodes[n], s, run_params) for n, s in specs.items()}


def _cached(
    specs: dict[str, NodeSpec], nodes: Sequence[Node[Any, Any]], default: bool
) -> dict[str, NodeSpec]:
    """``specs`` with each cached node's caching pinned: its TTL and code version (a node's
    ``cache=`` wins over the DAG's ``default``; a branch is not cached by default)."""
    for n in nodes:
        wanted = n.options.cache if n.options.cache is not None else default and not n.branch
        if wanted:
            ttl = n.options.cache_ttl
            specs[n.name] = replace(
                specs[n.name],
                cache=True,
                cache_ttl=int(ttl.total_seconds()) if ttl is not None else None,
                code_version=code_version(n.fn, n.options.version),
                cache_custom=n.options.cache_key is not None,
            )
    return specs


def _graph(
    dag: str, nodes: Mapping[str, Node[Any, Any]], declared: Sequence[str] | None
) -> tuple[nx.DiGraph, dict[str, list[tuple[str, inspect.Parameter]]]]:
    """The graph (data edges from parameter names, ``after=`` edges) and, per run
    parameter, the nodes taking it."""
    graph: nx.DiGraph = nx.DiGraph(name=dag)
    graph.add_nodes_from(nodes)
    uses: dict[str, list[tuple[str, inspect.Parameter]]] = {}
    for n in nodes.values():
        _check_importable(n)
        for pname, param in n.signature.parameters.items():
            if pname in nodes:
                graph.add_edge(pname, n.name, data=True)
            else:
                _check_param(n.name, pname, nodes, declared, param.default is param.empty)
                uses.setdefault(pname, []).append((n.name, param))
        if n.map_over is not None:
            if n.map_over not in nodes:
                raise UnknownNodeError(n.name, n.map_over, list(nodes))
            if n.map_over not in n.signature.parameters:
                raise NodeDefinitionError(
                    f"@{dag}.map({n.map_over!r}) on {n.name!r}: the function needs a "
                    f"parameter named {n.map_over!r} to receive one item"
                )
        for ref in n.options.after:
            if ref not in nodes:
                raise UnknownNodeError(n.name, ref, list(nodes))
            if not graph.has_edge(ref, n.name):
                graph.add_edge(ref, n.name, data=False)
    return graph, uses


def _check_param(
    node: str,
    pname: str,
    nodes: Mapping[str, Any],
    declared: Sequence[str] | None,
    required: bool = True,
) -> None:
    """A parameter that is not a node must be a run parameter the API can take, and not
    a typo of a node's name (``totlas`` for ``totals``; one with a default is meant as a
    run parameter)."""
    if pname in RESERVED_PARAMS:
        raise NodeDefinitionError(
            f"node {node!r}: run parameter {pname!r} clashes with DAG.submit({pname}=...); "
            "rename the parameter"
        )
    if declared is not None and pname in declared:
        return
    close = [n for n in nodes if required and is_typo(pname, n)]
    if declared is None and not close:
        return
    guess = close or difflib.get_close_matches(pname, [*nodes, *(declared or ())], n=1)
    hint = f"did you mean {guess[0]!r}? " if guess else ""
    raise UnknownNodeError(
        node,
        pname,
        list(nodes),
        fix=f"{hint}a parameter names a node (an edge) or a run parameter"
        + (" declared in params=" if declared is not None else "")
        + (f"; to keep {pname!r} as a run parameter, declare it: DAG(..., params=[{pname!r}])"),
    )


def _specs(
    dag: str, nodes: Mapping[str, Node[Any, Any]], graph: nx.DiGraph, defaults: NodeSpec
) -> dict[str, NodeSpec]:
    """A :class:`NodeSpec` per node, in a deterministic topological order (``defaults``
    carries the DAG's queue, output TTL and output limit)."""
    specs: dict[str, NodeSpec] = {}
    for name in nx.lexicographical_topological_sort(graph):
        n = nodes[name]
        parents = tuple(sorted(graph.predecessors(name)))
        # a join: two or more upstream edges, or downstream of a map (waiting for all its
        # items); a map over a mapped node goes item by item, without a join
        is_join = len(parents) >= 2 or any(
            nodes[p].map_over is not None and p != n.map_over for p in parents
        )
        queue = n.options.queue or (join_queue_name(dag, name) if is_join else defaults.queue_name)
        specs[name] = NodeSpec(
            name=name,
            parents=parents,
            data_parents=tuple(p for p in parents if graph.edges[p, name]["data"]),
            children=tuple(sorted(graph.successors(name))),
            params=tuple(p for p in n.signature.parameters if p not in nodes),
            queue_name=queue,
            is_join=is_join,
            rule=n.options.rule,
            timeout=n.options.timeout,
            retry=n.options.retry,
            result_ttl=n.options.result_ttl or defaults.result_ttl,
            map_over=n.map_over,
            chunk=n.chunk,
            max_output_bytes=n.options.max_output_bytes or defaults.max_output_bytes,
            branch=n.branch,
            returns=_returns(n),
            command=program.argv if (program := commands.command_of(n.fn)) else None,
            image=program.image if program else None,
            concurrency=n.options.concurrency,
            concurrency_key=n.options.concurrency_key,
            pool=n.options.pool,
            pool_slots=n.options.pool_slots,
            rate_limit=n.options.rate_limit,
            priority=n.options.priority,
        )
    return specs


def _check_flow(
    node: Node[Any, Any], parents: list[str], run_params: set[str], serializer: str
) -> None:
    """The node's flow control fits the graph: a ``concurrency_key`` needs ``concurrency``
    and names a run parameter or a field of a parent's output; limits are for a node's own
    job (a mapped node's items are not limited yet)."""
    opts, where = node.options, f"node {node.name!r}"
    limited = opts.concurrency is not None or opts.pool is not None or opts.rate_limit
    if limited and node.map_over is not None:
        raise NodeDefinitionError(
            f"{where}: concurrency, pool and rate_limit are not supported on a mapped node "
            "yet; limit the node it maps over, or a node downstream"
        )
    key = opts.concurrency_key
    if key is None:
        return
    if opts.concurrency is None:
        raise NodeDefinitionError(
            f"{where}: concurrency_key={key!r} needs concurrency=N (the limit per key)"
        )
    source, field_name = key_source(key)
    if field_name is None and source not in run_params:
        raise NodeDefinitionError(
            f"{where}: concurrency_key={key!r} names no run parameter of the DAG; use a "
            "parameter a node takes, or 'parent.field'"
        )
    if field_name is not None and source not in parents:
        raise NodeDefinitionError(
            f"{where}: concurrency_key={key!r} names {source!r}, which is not a parent of "
            f"the node; parents: {', '.join(parents) or 'none'}"
        )
    if field_name is not None and serializer != "json":
        raise NodeDefinitionError(
            f"{where}: concurrency_key={key!r} reads a parent's output, which needs "
            f"serializer='json' (the DAG's is {serializer!r}); use a run parameter instead"
        )


def is_typo(name: str, of: str) -> bool:
    """True when ``name`` is one slip from ``of`` (a letter added, dropped, changed, or two
    neighbours swapped) and long enough for that to mean a typo (4 letters or more).

    Examples:
        >>> is_typo("totlas", "totals"), is_typo("n_customers", "customers"), is_typo("b", "a")
        (True, False, False)
        >>> is_typo("ticks", "tick"), is_typo("total", "totals")
        (False, False)
    """
    if name == of or min(len(name), len(of)) < 4 or abs(len(name) - len(of)) > 1:
        return False
    if name == of + "s" or (of.endswith("s") and name == of[:-1]):
        return False  # a plural is a name of its own
    # optimal string alignment distance, stopping at 2
    prev2: list[int] = []
    prev = list(range(len(of) + 1))
    for i, a in enumerate(name, 1):
        row = [i] + [0] * len(of)
        for j, b in enumerate(of, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + (a != b))
            if i > 1 and j > 1 and a == of[j - 2] and name[i - 2] == b:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1] <= 1


def _returns(node: Node[Any, Any]) -> str | None:
    """The stored output's type as text, when standard types spell it (see NodeSpec)."""
    annotation = stored_type(node)
    return None if annotation is None else type_expr(annotation)


def _check_rule(node: Node[Any, Any], parents: int) -> None:
    """A trigger rule its parents can satisfy: anything but the default needs parents, and a
    quorum no more than there are."""
    rule = node.options.rule
    if parents == 0 and rule != "all_success":
        raise NodeDefinitionError(
            f"node {node.name!r} has no upstream node, so trigger={rule!r} has nothing to wait "
            "for; remove trigger= or give it parents"
        )
    _, k = parse_rule(rule)
    if k is not None and k > parents:
        raise NodeDefinitionError(
            f"node {node.name!r}: trigger=quorum({k}) needs that many parents, "
            f"it has {parents}; lower the quorum or add parents"
        )


def _check_branch(node: Node[Any, Any], children: list[str]) -> None:
    """A branch has children to choose from, and the names its return annotation allows
    (``Literal[...]``, or a list of it) are among them."""
    if not node.branch:
        return
    if not children:
        raise NodeDefinitionError(
            f"branch {node.name!r} has no children to choose from; give it children, or make "
            "it a plain node"
        )
    ret = node.signature.return_annotation
    literal = get_args(ret)[0] if get_origin(ret) in (list, tuple) and get_args(ret) else ret
    if get_origin(literal) is Literal:
        bad = [n for n in get_args(literal) if n not in children]
        if bad:
            raise NodeDefinitionError(
                f"branch {node.name!r} may return {bad[0]!r}, which is not one of its children "
                f"({', '.join(children)}); fix the Literal or the edges"
            )


def _check_importable(node: Node[Any, Any]) -> None:
    """A worker can import the node's function by ``module.qualname`` (a command node's
    program comes with the DAG definition itself)."""
    fn = node.fn
    if commands.command_of(fn) is not None or body_waiting(fn) is not None:
        return
    qualname = getattr(fn, "__qualname__", "")
    module_name = getattr(fn, "__module__", None)
    where = f"node {node.name!r} ({module_name}.{qualname})"
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise NodeImportError(
            f"{where}: a lambda or a function defined inside another function cannot be "
            "imported by a worker; define it at the top level of a module"
        )
    module = sys.modules.get(module_name or "")
    if module is None:
        raise NodeImportError(
            f"{where}: module {module_name!r} is not importable; define the node in a module"
        )
    if module_name == "__main__" and not getattr(module, "__file__", None):
        raise NodeImportError(
            f"{where}: defined in an interactive __main__ that workers cannot import; "
            "move the DAG into a .py file and address it as file.py:dag"
        )
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if target is not fn and getattr(target, "fn", None) is not fn:
        raise NodeImportError(
            f"{where}: {module_name}.{qualname} does not resolve to this function, so a "
            "worker cannot import it; give the function a unique top-level name"
        )
