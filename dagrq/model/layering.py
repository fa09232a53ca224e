"""Where a DAG's boxes and edges go: a layered (Sugiyama-style) drawing, top to bottom. Pure.

The passes, as in Graphviz's ``dot`` and the literature it follows (Gansner et al., "A
Technique for Drawing Directed Graphs", 1993), simplified:

1. **Layers**: a node sits one layer below its lowest parent (longest path from the sources);
   a source then moves down to just above its highest child, so it does not dangle a long edge.
2. **Long edges** get a point (a *dummy*) in every layer they pass through, so they are routed
   between the boxes of those layers, never through them.
3. **Order** in each layer: barycentre sweeps down and up (each node moves to the mean position
   of its neighbours in the layer just swept), then swaps of neighbours that cross less
   (*transpose*, on layers of at most :data:`TRANSPOSE_MAX` nodes); the order with the fewest
   crossings seen is kept. Crossings between two layers are counted in O(E log V) (inversions,
   by a Fenwick tree).
4. **x**: each layer is placed as close as it can to where its neighbours are (the mean of
   their x), keeping its order and the gaps, exactly (a weighted isotonic regression, pool
   adjacent violators); passes alternate down and up, and dummies weigh more, so long edges
   run straight.

Examples:
    >>> d = layered(["a", "b", "c", "d"],
    ...             [("a", "b"), ("a", "c"), ("b", "d"), ("c", "d"), ("a", "d")])
    >>> len(d.edges[("a", "d")])  # from a's bottom, through layer 1 between b and c, to d's top
    4
    >>> sorted({y for _, y in d.boxes.values()})
    [20.0, 120.0, 220.0]
    >>> x = d.edges[("a", "d")][1][0]  # it passes layer 1 beside b and c, not through them
    >>> any(bx <= x <= bx + 150 for n, (bx, _) in d.boxes.items() if n in "bc")
    False
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from itertools import pairwise

import networkx as nx

#: layers with at most this many nodes (and dummies) get the transpose pass
TRANSPOSE_MAX = 60
#: barycentre sweeps (each one down and one up), at most
SWEEPS = 12
#: half the width a dummy takes in its layer, and the gap next to one
DUMMY_HALF, DUMMY_GAP = 4.0, 12.0
#: how much more a dummy's wish to sit under its neighbour counts than a box's
DUMMY_WEIGHT = 4.0

Key = Hashable  # a node's name, or a dummy: ("", parent, child, layer)
Gap = Callable[[Key, Key], float]


@dataclass(frozen=True)
class Drawing:
    """A laid-out DAG: each box's top-left corner, each edge's points (from the parent's
    bottom centre, through each layer it crosses, to the child's top centre), the size."""

    boxes: dict[str, tuple[float, float]]
    edges: dict[tuple[str, str], list[tuple[float, float]]]
    width: float
    height: float


def layered(
    nodes: Sequence[str],
    edges: Sequence[tuple[str, str]],
    *,
    box_w: float = 150,
    box_h: float = 40,
    gap_x: float = 40,
    gap_y: float = 60,
    margin: float = 20,
) -> Drawing:
    """Lay out the DAG of ``nodes`` and ``edges`` (parent, child) in layers, top to bottom.
    Deterministic: the same input gives the same drawing (ties go by ``nodes``' order)."""
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(nodes)
    graph.add_edges_from(edges)
    rank = {n: i for i, n in enumerate(nodes)}
    layer = _layers(graph, rank)
    rows, up, down, chains = _split(graph, layer, rank)
    rows = _order(rows, up, down)

    def half(k: Key) -> float:
        return DUMMY_HALF if isinstance(k, tuple) else box_w / 2

    def gap(a: Key, b: Key) -> float:
        both = not isinstance(a, tuple) and not isinstance(b, tuple)
        return half(a) + half(b) + (gap_x if both else DUMMY_GAP)

    x = _place(rows, up, down, gap)
    left = min((x[k] - half(k) for row in rows for k in row), default=0.0)
    shift = margin - left
    y = [float(margin + i * (box_h + gap_y)) for i in range(len(rows))]
    boxes = {n: (x[n] + shift - box_w / 2, y[layer[n]]) for n in nodes}
    lines: dict[tuple[str, str], list[tuple[float, float]]] = {}
    for parent, child in edges:
        points = [(x[parent] + shift, y[layer[parent]] + box_h)]
        for k in chains.get((parent, child), []):
            at = y[k[3]]  # type: ignore[index]
            points += [(x[k] + shift, at), (x[k] + shift, at + box_h)]
        points.append((x[child] + shift, y[layer[child]]))
        lines[(parent, child)] = points
    width = max((x[k] + shift + half(k) for row in rows for k in row), default=0.0) + margin
    height = (y[-1] + box_h + margin) if y else 2 * margin
    return Drawing(boxes, lines, width, height)


def _layers(graph: nx.DiGraph, rank: dict[str, int]) -> dict[str, int]:
    """Each node's layer: below its lowest parent; a source just above its highest child."""
    order = list(nx.lexicographical_topological_sort(graph, key=lambda n: rank[n]))
    layer: dict[str, int] = {}
    for n in order:
        layer[n] = 1 + max((layer[p] for p in graph.predecessors(n)), default=-1)
    for n in order:
        if graph.in_degree(n) == 0 and graph.out_degree(n) > 0:
            layer[n] = min(layer[c] for c in graph.successors(n)) - 1
    return layer


def _split(
    graph: nx.DiGraph, layer: dict[str, int], rank: dict[str, int]
) -> tuple[
    list[list[Key]], dict[Key, list[Key]], dict[Key, list[Key]], dict[tuple[str, str], list[Key]]
]:
    """The layers' members (nodes and dummies, first in ``rank`` order), each member's
    neighbours in the layer above and below, and each long edge's dummies."""
    rows: list[list[Key]] = [[] for _ in range(1 + max(layer.values(), default=-1))]
    for n in sorted(graph, key=lambda n: rank[n]):
        rows[layer[n]].append(n)
    up: dict[Key, list[Key]] = {k: [] for row in rows for k in row}
    down: dict[Key, list[Key]] = {k: [] for row in rows for k in row}
    chains: dict[tuple[str, str], list[Key]] = {}
    for parent, child in sorted(graph.edges, key=lambda e: (rank[e[0]], rank[e[1]])):
        path: list[Key] = [parent]
        for at in range(layer[parent] + 1, layer[child]):
            dummy = ("", parent, child, at)
            rows[at].append(dummy)
            up[dummy], down[dummy] = [], []
            path.append(dummy)
        chains[(parent, child)] = path[1:]
        path.append(child)
        for a, b in pairwise(path):
            down[a].append(b)
            up[b].append(a)
    return rows, up, down, chains


def _order(
    rows: list[list[Key]], up: dict[Key, list[Key]], down: dict[Key, list[Key]]
) -> list[list[Key]]:
    """Each layer's order with few crossings: barycentre sweeps, then transposes; the best
    order seen is kept."""
    rows = [list(r) for r in rows]
    for i in range(1, len(rows)):  # a first order from the layer above
        rows[i] = _by_barycentre(rows[i], up, rows[i - 1])
    best, fewest, stale = [list(r) for r in rows], _crossings(rows, down), 0
    for _ in range(SWEEPS):
        if fewest == 0 or stale >= 3:
            break
        for i in range(1, len(rows)):
            rows[i] = _by_barycentre(rows[i], up, rows[i - 1])
        for i in range(len(rows) - 2, -1, -1):
            rows[i] = _by_barycentre(rows[i], down, rows[i + 1])
        _transpose(rows, up, down)
        now = _crossings(rows, down)
        if now < fewest:
            best, fewest, stale = [list(r) for r in rows], now, 0
        else:
            stale += 1
    return best


def _by_barycentre(row: list[Key], near: dict[Key, list[Key]], other: list[Key]) -> list[Key]:
    """``row`` sorted by the mean position of each member's neighbours in ``other`` (a member
    without any keeps its place)."""
    at = {k: i for i, k in enumerate(other)}
    keys = {}
    for i, k in enumerate(row):
        where = [at[n] for n in near[k]]
        keys[k] = (sum(where) / len(where) if where else float(i), i)
    return sorted(row, key=lambda k: keys[k])


def _crossings(rows: list[list[Key]], down: dict[Key, list[Key]]) -> int:
    """Edge crossings between every two adjacent layers."""
    return sum(_between(rows[i], rows[i + 1], down) for i in range(len(rows) - 1))


def _between(upper: list[Key], lower: list[Key], down: dict[Key, list[Key]]) -> int:
    """Crossings of the edges from ``upper`` to ``lower``: inversions of the lower ends when
    the edges are sorted by their upper end (a Fenwick tree, O(E log V))."""
    at = {k: i for i, k in enumerate(lower)}
    ends = [at[c] for k in upper for c in sorted(down[k], key=lambda c: at[c])]
    tree, total = [0] * (len(lower) + 1), 0
    for seen, e in enumerate(ends):
        i, smaller_or_equal = e + 1, 0
        while i > 0:
            smaller_or_equal += tree[i]
            i -= i & -i
        total += seen - smaller_or_equal
        i = e + 1
        while i <= len(lower):
            tree[i] += 1
            i += i & -i
    return total


def _transpose(rows: list[list[Key]], up: dict[Key, list[Key]], down: dict[Key, list[Key]]) -> None:
    """Swap neighbours in small layers while a swap crosses less with both adjacent layers."""
    for _ in range(4):
        better = False
        for i, row in enumerate(rows):
            if len(row) > TRANSPOSE_MAX:
                continue
            above = {k: j for j, k in enumerate(rows[i - 1])} if i > 0 else {}
            below = {k: j for j, k in enumerate(rows[i + 1])} if i + 1 < len(rows) else {}
            for j in range(len(row) - 1):
                a, b = row[j], row[j + 1]
                if _pair(b, a, up, down, above, below) < _pair(a, b, up, down, above, below):
                    row[j], row[j + 1], better = b, a, True
        if not better:
            return


def _pair(
    a: Key,
    b: Key,
    up: dict[Key, list[Key]],
    down: dict[Key, list[Key]],
    above: dict[Key, int],
    below: dict[Key, int],
) -> int:
    """Crossings between ``a``'s and ``b``'s edges when ``a`` is left of ``b``."""
    n = sum(1 for p in up[a] for q in up[b] if above[p] > above[q])
    return n + sum(1 for p in down[a] for q in down[b] if below[p] > below[q])


def _place(
    rows: list[list[Key]],
    up: dict[Key, list[Key]],
    down: dict[Key, list[Key]],
    sep: Gap,
) -> dict[Key, float]:
    """x of each member's centre: packed, then moved toward its neighbours' mean x, layer by
    layer, down and up, keeping order and the least distance ``sep(a, b)`` between the centres
    of neighbours."""
    x: dict[Key, float] = {}
    for row in rows:
        at = 0.0
        for j, k in enumerate(row):
            at = at + sep(row[j - 1], k) if j else 0.0
            x[k] = at
    passes = [(range(1, len(rows)), up), (range(len(rows) - 2, -1, -1), down)]
    for _ in range(4):
        for layers, near in passes:
            for i in layers:
                _settle(rows[i], near, x, sep)
    return x


def _settle(row: list[Key], near: dict[Key, list[Key]], x: dict[Key, float], sep: Gap) -> None:
    """Move ``row``'s members as close as they can to the mean x of their ``near``
    neighbours, in order and ``sep`` apart (weighted least squares: pool adjacent
    violators over ``y = x - offset``)."""
    offsets, at = [], 0.0
    for j, k in enumerate(row):
        at = at + sep(row[j - 1], k) if j else 0.0
        offsets.append(at)
    blocks: list[list[float]] = []  # [weighted sum, weight, count]
    for j, k in enumerate(row):
        wanted = [x[n] for n in near[k]]
        target = sum(wanted) / len(wanted) if wanted else x[k]
        weight = (DUMMY_WEIGHT if isinstance(k, tuple) else 1.0) * (1.0 if wanted else 0.05)
        blocks.append([weight * (target - offsets[j]), weight, 1.0])
        while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] > blocks[-1][0] / blocks[-1][1]:
            s, w, c = blocks.pop()
            blocks[-1][0] += s
            blocks[-1][1] += w
            blocks[-1][2] += c
    j = 0
    for s, w, c in blocks:
        for _ in range(int(c)):
            x[row[j]] = s / w + offsets[j]
            j += 1
