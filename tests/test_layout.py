"""The run page's drawing, checked from the SVG it serves: on every example no edge crosses a
node's box, and edges cross each other less than with the first layout (one row per
topological generation, names sorted, straight lines), whose numbers docs/ui.md quotes."""

from __future__ import annotations

import random
import re
import xml.etree.ElementTree as ET
from itertools import combinations, pairwise

import networkx as nx
import pytest

from dagrq import loader
from dagrq.model.layering import Drawing, layered
from dagrq.model.layout import BOX_H, BOX_W, GAP_X, GAP_Y, to_svg
from dagrq.model.plan import Plan

from .helpers import ROOT

EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.py"))
NS = "{http://www.w3.org/2000/svg}"
Segment = tuple[tuple[float, float], tuple[float, float]]


def _geometry(svg: str) -> tuple[dict[str, tuple[float, ...]], list[tuple[str, str, Segment]]]:
    """The boxes (name -> x, y, w, h) and edge segments (parent, child, segment) of an SVG."""
    root = ET.fromstring(svg)
    boxes = {}
    for g in root.iter(NS + "g"):
        rect = g.find(NS + "rect")
        if g.get("class") == "node" and rect is not None:
            boxes[g.get("data-node", "")] = tuple(
                float(rect.get(k, 0)) for k in ("x", "y", "width", "height")
            )
    segments = []
    for path in root.iter(NS + "path"):
        if path.get("class") != "edge":
            continue
        points = [
            (float(x), float(y)) for x, y in re.findall(r"([\d.]+),([\d.]+)", path.get("d", ""))
        ]
        segments += [
            (path.get("data-from", ""), path.get("data-to", ""), s) for s in pairwise(points)
        ]
    return boxes, segments


def _cross(a: Segment, b: Segment) -> bool:
    """Whether two segments cross at a point inside both (touching ends do not count)."""

    def side(p: tuple[float, float], q: tuple[float, float], r: tuple[float, float]) -> float:
        return (q[0] - p[0]) * (r[1] - p[1]) - (q[1] - p[1]) * (r[0] - p[0])

    (p1, p2), (q1, q2) = a, b
    d1, d2, d3, d4 = side(q1, q2, p1), side(q1, q2, p2), side(p1, p2, q1), side(p1, p2, q2)
    return d1 * d2 < -1e-9 and d3 * d4 < -1e-9


def _through(seg: Segment, box: tuple[float, ...]) -> bool:
    """Whether a segment passes through the inside of a box (its border shrunk by 1)."""
    x, y, w, h = box[0] + 1, box[1] + 1, box[2] - 2, box[3] - 2
    corners = [(x, y), (x + w, y), (x + w, y + h), (x, y + h)]
    inside = any(x < px < x + w and y < py < y + h for px, py in seg)
    return inside or any(_cross(seg, (c, corners[(i + 1) % 4])) for i, c in enumerate(corners))


def _counts(svg: str) -> tuple[int, int]:
    """(edge crossings, segments through a box that is not their edge's end) of an SVG."""
    boxes, segments = _geometry(svg)
    crossings = sum(
        1
        for (a1, a2, a), (b1, b2, b) in combinations(segments, 2)
        if (a1, a2) != (b1, b2) and _cross(a, b)
    )
    hits = sum(
        1
        for parent, child, seg in segments
        for name, box in boxes.items()
        if name not in (parent, child) and _through(seg, box)
    )
    return crossings, hits


def _first_layout(plan: Plan) -> str:
    """The first layout's drawing, as an SVG of the same shape: rows by topological
    generation, names sorted in a row, rows centred, straight lines parent -> child."""
    graph = nx.DiGraph([(p, n) for n, s in plan.specs.items() for p in s.parents])
    graph.add_nodes_from(plan.specs)
    rows = [sorted(layer) for layer in nx.topological_generations(graph)]
    widest = max(len(r) for r in rows)
    at = {}
    for y, row in enumerate(rows):
        offset = (widest - len(row)) * (BOX_W + GAP_X) / 2
        for x, name in enumerate(row):
            at[name] = (20 + offset + x * (BOX_W + GAP_X), 20 + y * (BOX_H + GAP_Y))
    parts = ['<svg xmlns="http://www.w3.org/2000/svg">']
    for child, spec in plan.specs.items():
        for parent in spec.parents:
            (x1, y1), (x2, y2) = at[parent], at[child]
            parts.append(
                f'<path class="edge" data-from="{parent}" data-to="{child}" '
                f'd="M{x1 + BOX_W / 2},{y1 + BOX_H} L{x2 + BOX_W / 2},{y2}"/>'
            )
    for name, (x, y) in at.items():
        parts.append(
            f'<g class="node" data-node="{name}"><rect x="{x}" y="{y}" '
            f'width="{BOX_W}" height="{BOX_H}"/></g>'
        )
    return "".join(parts) + "</svg>"


@pytest.mark.parametrize("example", EXAMPLES)
def test_no_edge_crosses_a_box_and_fewer_edges_cross_than_before(example: str) -> None:
    plan = loader.load(f"{ROOT / 'examples' / example}:dag").plan
    crossings, hits = _counts(to_svg(plan))
    before, before_hits = _counts(_first_layout(plan))
    print(
        f"{example}: crossings {before} -> {crossings}, edges through boxes {before_hits} -> {hits}"
    )
    assert hits == 0
    assert crossings < before or crossings == before == 0


def test_the_check_finds_what_it_looks_for() -> None:
    """The geometry check itself: a crossing and a box in the way are found."""
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg">'
        '<path class="edge" data-from="a" data-to="d" d="M0,0 L100,100"/>'
        '<path class="edge" data-from="b" data-to="c" d="M100,0 L0,100"/>'
        '<g class="node" data-node="x"><rect x="30" y="45" width="30" height="10"/></g></svg>'
    )
    assert _counts(svg) == (1, 2)


def _svg_of(drawing: Drawing) -> str:
    """A drawing as the minimal SVG :func:`_counts` reads."""
    parts = ['<svg xmlns="http://www.w3.org/2000/svg">']
    for (parent, child), points in drawing.edges.items():
        d = "M" + " L".join(f"{x},{y}" for x, y in points)
        parts.append(f'<path class="edge" data-from="{parent}" data-to="{child}" d="{d}"/>')
    for name, (x, y) in drawing.boxes.items():
        parts.append(
            f'<g class="node" data-node="{name}"><rect x="{x}" y="{y}" width="{BOX_W}" '
            f'height="{BOX_H}"/></g>'
        )
    return "".join(parts) + "</svg>"


@pytest.mark.parametrize("seed", range(25))
def test_random_dags_are_drawn_with_no_edge_through_a_box_and_no_overlap(seed: int) -> None:
    rng = random.Random(seed)
    n = rng.randint(5, 35)
    names = [f"n{i}" for i in range(n)]
    edges = sorted(
        {(names[a], names[b]) for a, b in (sorted(rng.sample(range(n), 2)) for _ in range(n * 2))}
    )
    drawing = layered(names, edges, box_w=BOX_W, box_h=BOX_H, gap_x=GAP_X, gap_y=GAP_Y)
    assert _counts(_svg_of(drawing))[1] == 0
    rows: dict[float, list[float]] = {}
    for x, y in drawing.boxes.values():
        rows.setdefault(y, []).append(x)
    for xs in rows.values():
        xs.sort()
        assert all(b - a > BOX_W for a, b in pairwise(xs))  # side by side, apart
    assert layered(names, edges, box_w=BOX_W, box_h=BOX_H) == layered(
        names, edges, box_w=BOX_W, box_h=BOX_H
    )  # the same drawing every time


def test_a_thousand_node_fan_is_three_rows() -> None:
    names = ["root", *(f"n{i}" for i in range(998)), "sink"]
    edges = [("root", f"n{i}") for i in range(998)] + [(f"n{i}", "sink") for i in range(998)]
    drawing = layered(names, edges)
    assert len({y for _, y in drawing.boxes.values()}) == 3
    assert len({x for x, _ in drawing.boxes.values()}) >= 998
