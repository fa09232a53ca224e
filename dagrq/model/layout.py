"""A DAG drawn as SVG without Graphviz: nodes in layers by topological generation. Pure.

Each node is a ``<g class="node" id="node-<name>" data-node="<name>">`` with a ``rect`` whose
fill is its state's colour, so a page can recolour a node without redrawing.

Examples:
    >>> from dagrq.model.plan import NodeSpec, Plan
    >>> plan = Plan("d", "json", 60, {
    ...     "a": NodeSpec(name="a", children=("b",)),
    ...     "b": NodeSpec(name="b", parents=("a",), data_parents=("a",)),
    ... })
    >>> svg = to_svg(plan, {"a": "succeeded"})
    >>> 'id="node-a"' in svg and 'fill="#009E73"' in svg and svg.startswith("<svg")
    True
"""

from __future__ import annotations

from collections.abc import Mapping
from html import escape

import networkx as nx

from .plan import Plan
from .status import STATE_COLORS

#: box size and gaps, in SVG units
BOX_W, BOX_H, GAP_X, GAP_Y = 150, 40, 40, 60


def positions(plan: Plan) -> dict[str, tuple[float, float]]:
    """The top-left corner of each node's box: one row per topological generation."""
    graph: nx.DiGraph = nx.DiGraph()
    graph.add_nodes_from(plan.specs)
    for name, spec in plan.specs.items():
        graph.add_edges_from((p, name) for p in spec.parents)
    rows = [sorted(layer) for layer in nx.topological_generations(graph)]
    widest = max((len(r) for r in rows), default=1)
    out: dict[str, tuple[float, float]] = {}
    for y, row in enumerate(rows):
        offset = (widest - len(row)) * (BOX_W + GAP_X) / 2
        for x, name in enumerate(row):
            out[name] = (20 + offset + x * (BOX_W + GAP_X), 20 + y * (BOX_H + GAP_Y))
    return out


def to_svg(plan: Plan, states: Mapping[str, str] | None = None) -> str:
    """The plan as an SVG document; nodes filled by ``states`` (pending when absent)."""
    states = states or {}
    where = positions(plan)
    width = max((x for x, _ in where.values()), default=0) + BOX_W + 20
    height = max((y for _, y in where.values()), default=0) + BOX_H + 20
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="sans-serif" font-size="13">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" '
        'markerHeight="8" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#555"/></marker>'
        "</defs>",
    ]
    for name, spec in plan.specs.items():
        x2, y2 = where[name]
        for parent in spec.parents:
            x1, y1 = where[parent]
            dash = "" if parent in spec.data_parents else ' stroke-dasharray="4 3"'
            parts.append(
                f'<line x1="{x1 + BOX_W / 2:.0f}" y1="{y1 + BOX_H:.0f}" x2="{x2 + BOX_W / 2:.0f}" '
                f'y2="{y2:.0f}" stroke="#555" marker-end="url(#arrow)"{dash}/>'
            )
    for name, spec in plan.specs.items():
        x, y = where[name]
        state = states.get(name, "pending")
        label = escape(name if len(name) <= 20 else name[:19] + "…")
        stroke = 3 if spec.is_join else 1
        parts.append(
            f'<g class="node" id="node-{escape(name)}" data-node="{escape(name)}" '
            f'data-state="{state}" style="cursor:pointer"><title>{escape(name)}: {state}</title>'
            f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
            f'fill="{STATE_COLORS.get(state, "#FFFFFF")}" stroke="#333" stroke-width="{stroke}"/>'
            f'<text x="{x + BOX_W / 2:.0f}" y="{y + BOX_H / 2 + 5:.0f}" text-anchor="middle">'
            f"{label}</text></g>"
        )
    parts.append("</svg>")
    return "\n".join(parts)
