"""Properties over random DAGs (hypothesis): joins, cycles, and distributed == run_local."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path

import networkx as nx
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dagrq import CycleError, loader
from dagrq.model.local import simulate
from dagrq.model.options import RULES

from .helpers import Workers, wait_for


@st.composite
def random_dags(
    draw: st.DrawFn, max_nodes: int = 9
) -> tuple[int, set[tuple[int, int]], set[tuple[int, int]]]:
    """``(n, data_edges, order_edges)`` with every edge going from a lower to a higher index."""
    n = draw(st.integers(1, max_nodes))
    pairs = [(i, j) for j in range(n) for i in range(j)]
    data = set(draw(st.lists(st.sampled_from(pairs), unique=True))) if pairs else set()
    rest = [p for p in pairs if p not in data]
    order = set(draw(st.lists(st.sampled_from(rest), unique=True, max_size=4))) if rest else set()
    return n, data, order


def render(
    name: str,
    n: int,
    data: set[tuple[int, int]],
    order: set[tuple[int, int]],
    back: tuple[int, int] | None = None,
) -> str:
    """Python source of a pipeline module with that shape (node functions must be importable)."""
    lines = ["from dagrq import DAG", "", f"dag = DAG({name!r})", ""]
    for j in range(n):
        parents = sorted(i for i, c in data if c == j)
        if back is not None and back[1] == j:
            parents.append(back[0])
        after = sorted(f"n{i}" for i, c in order if c == j)
        args = [f"n{i}: int" for i in parents] + ["seed: int = 1"]
        terms = " + ".join(f"n{i} * {i + 2}" for i in parents) or "0"
        lines += [
            f"@dag.node(after={after!r})" if after else "@dag.node",
            f"def n{j}({', '.join(args)}) -> int:",
            f"    return (seed * {j + 1} + {terms}) % 1000003",
            "",
        ]
    return "\n".join(lines)


def write(folder: Path, source: str) -> str:
    path = folder / f"gen_{uuid.uuid4().hex[:12]}.py"
    path.write_text(source)
    return f"{path}:dag"


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=random_dags())
def test_joins_are_exactly_the_nodes_with_two_or_more_upstream_edges(
    tmp_path: Path, shape: tuple
) -> None:  # type: ignore[type-arg]
    n, data, order = shape
    dag = loader.load(write(tmp_path, render("prop", n, data, order)))
    indegree = {j: len({i for i, c in data | order if c == j}) for j in range(n)}
    assert set(dag.joins) == {f"n{j}" for j, d in indegree.items() if d >= 2}
    assert dag.graph.number_of_edges() == len(data | order)
    assert nx.is_directed_acyclic_graph(dag.graph)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=random_dags(), data=st.data())
def test_a_cycle_is_always_refused_and_names_a_real_cycle(
    tmp_path: Path, shape: tuple, data: st.DataObject
) -> None:  # type: ignore[type-arg]
    n, edges, order = shape
    graph = nx.DiGraph(list(edges | order))
    graph.add_nodes_from(range(n))
    candidates = [(j, i) for i, j in nx.transitive_closure_dag(graph).edges if (j, i) not in edges]
    if not candidates:
        candidates = [(0, 0)]  # a node that takes itself: the smallest cycle
    back = data.draw(st.sampled_from(sorted(candidates)))
    dag = loader.load(write(tmp_path, render("cyc", n, edges, order, back=back)))
    with pytest.raises(CycleError) as info:
        dag.validate()
    ring = info.value.cycle
    assert ring[0] == ring[-1]
    full = nx.DiGraph([(f"n{i}", f"n{j}") for i, j in edges | order | {back}])
    assert all(full.has_edge(u, v) for u, v in itertools.pairwise(ring))


@st.composite
def flavoured_dags(
    draw: st.DrawFn,
) -> tuple[int, set[tuple[int, int]], set[tuple[int, int]], dict[int, str], set[int]]:
    """A random DAG with a trigger rule on every node with parents (any rule, quorums too) and
    some branches: ``(n, data_edges, order_edges, rules, branches)``."""
    n, data, order = draw(random_dags(max_nodes=8))
    rules: dict[int, str] = {}
    for j in range(n):
        parents = {i for i, c in data | order if c == j}
        if parents:
            choices = [*RULES, *(f"quorum:{k}" for k in range(1, len(parents) + 1))]
            rules[j] = draw(st.sampled_from(choices))
    with_children = sorted({i for i, _ in data | order})
    branches = (
        set(draw(st.lists(st.sampled_from(with_children), unique=True, max_size=2)))
        if with_children
        else set()
    )
    return n, data, order, rules, branches


def render_flavoured(name: str, shape: tuple) -> str:  # type: ignore[type-arg]
    """A pipeline of that shape whose nodes also skip themselves or fail, depending on the run's
    seed, and whose branches choose children by the seed."""
    n, data, order, rules, branches = shape
    lines = [
        "from typing import Any",
        "from dagrq import DAG, Skip",
        "",
        f"dag = DAG({name!r})",
        "",
    ]
    lines += ["def val(x: Any) -> int:", "    return x if isinstance(x, int) else len(x or [])", ""]
    for j in range(n):
        parents = sorted(i for i, c in data if c == j)
        after = sorted(f"n{i}" for i, c in order if c == j)
        children = sorted(f"n{c}" for i, c in data | order if i == j)
        opts = [f"after={after!r}"] if after else []
        if j in rules:
            opts.append(
                f"trigger={rules[j]!r}"
                if not rules[j].startswith("quorum")
                else f"trigger=__import__('dagrq').quorum({rules[j].split(':')[1]})"
            )
        decorator = "@dag.branch" if j in branches else "@dag.node"
        lines.append(f"{decorator}({', '.join(opts)})" if opts else decorator)
        args = [f"n{i}: Any = None" for i in parents] + ["seed: int = 1"]
        lines.append(f"def n{j}({', '.join(args)}) -> Any:")
        lines.append(f"    if (seed + {j}) % 7 == 3:")
        lines.append(f"        raise Skip('n{j} skips for seed ' + str(seed))")
        lines.append(f"    if (seed * 3 + {j}) % 11 == 5:")
        lines.append(f"        raise ValueError('n{j} fails for seed ' + str(seed))")
        if j in branches:
            lines.append(f"    names = {children!r}")
            lines.append("    return names[: 1 + seed % len(names)][::-1][: 1 + (seed // 3) % 2]")
        else:
            terms = " + ".join(f"val(n{i}) * {i + 2}" for i in parents) or "0"
            lines.append(f"    return (seed * {j + 1} + {terms}) % 1000003")
        lines.append("")
    return "\n".join(lines)


@settings(
    max_examples=10, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(shape=flavoured_dags(), seed=st.integers(0, 10**6))
def test_a_real_run_on_one_worker_equals_run_local(
    tmp_path: Path,
    conn: redis.Redis,
    redis_url: str,
    shape: tuple,  # type: ignore[type-arg]
    seed: int,
) -> None:
    address = write(tmp_path, render_flavoured(f"dist{uuid.uuid4().hex[:6]}", shape))
    dag = loader.load(address)
    dag.validate()
    pool = Workers(redis_url, tmp_path)
    try:
        pool.start(address, 1)
        run = dag.submit(conn, seed=seed)
        wait_for(lambda: run.status().state != "running", 60, "the run ended")
        local = simulate(dag.plan, dag.nodes, dag.codec, dag.validate_params({"seed": seed}))
        assert {n: s.state for n, s in run.status().nodes.items()} == local.states
        assert run.results() == local.results
    finally:
        pool.stop()
