"""A DAG drawn as SVG without Graphviz, laid out by :mod:`dagrq.model.layering` (layers,
crossing reduction, long edges routed between the boxes). Pure.

Each node is a ``<g class="node" id="node-<name>" data-node="<name>" data-state="...">``
with a ``rect`` filled with its state's colour, a glyph (its state's shape), its name and a
detail line (duration, or a map's items done of total, with a progress ring), so a page can
repaint a node without redrawing. Each edge is a ``<path class="edge">`` of straight
segments (``M x,y L x,y ...``) whose geometry a test can check.

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

import math
from collections.abc import Mapping
from html import escape

from .layering import Drawing, layered
from .plan import Plan
from .status import STATE_COLORS, STATE_GLYPHS, NodeStatus
from .words import seconds

#: box size and gaps, in SVG units
BOX_W, BOX_H, GAP_X, GAP_Y = 160, 44, 36, 56
#: states whose text is white (a dark fill)
DARK = frozenset({"running", "failed", "succeeded"})
#: radius of a map node's progress ring
RING_R = 9


def drawing(plan: Plan) -> Drawing:
    """Where each node's box and each edge go."""
    edges = [(p, name) for name, spec in plan.specs.items() for p in spec.parents]
    return layered(list(plan.specs), edges, box_w=BOX_W, box_h=BOX_H, gap_x=GAP_X, gap_y=GAP_Y)


def detail(node: NodeStatus | None) -> str:
    """The second line of a node's box: a map's items, else its duration once known.

    Examples:
        >>> detail(NodeStatus(state="succeeded", started_at=1.0, ended_at=3.5))
        '2.5 s'
        >>> detail(NodeStatus(state="running", items={"total": 40, "done": 37}))
        '37/40 items'
    """
    if node is None:
        return ""
    if node.items and node.items.get("total"):
        return f"{node.items.get('done', 0)}/{node.items['total']} items"
    took = node.duration_s
    return "" if took is None else seconds(took)


def to_svg(
    plan: Plan,
    states: Mapping[str, str] | None = None,
    nodes: Mapping[str, NodeStatus] | None = None,
) -> str:
    """The plan as an SVG document; nodes filled by ``states`` (pending when absent), with
    durations and map progress from ``nodes`` when given."""
    states, nodes = states or {}, nodes or {}
    where = drawing(plan)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{where.width:.0f}" '
        f'height="{where.height:.0f}" viewBox="0 0 {where.width:.0f} {where.height:.0f}" '
        'font-family="sans-serif" font-size="13" id="dag">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto"><path d="M0,0 L10,5 L0,10 z" fill="#666"/></marker>'
        "</defs>",
    ]
    for (parent, child), points in where.edges.items():
        data = parent in plan.specs[child].data_parents
        dash = "" if data else ' stroke-dasharray="4 3"'
        d = "M" + " L".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(
            f'<path class="edge" data-from="{escape(parent)}" data-to="{escape(child)}" '
            f'd="{d}" fill="none" stroke="#777" marker-end="url(#arrow)"{dash}/>'
        )
    for name, spec in plan.specs.items():
        node = nodes.get(name)
        state = states.get(name) or (node.state if node else "pending")
        parts.append(_box(name, state, node, where.boxes[name], spec.is_join, spec.map_over))
    parts.append("</svg>")
    return "\n".join(parts)


def _box(
    name: str,
    state: str,
    node: NodeStatus | None,
    at: tuple[float, float],
    join: bool,
    mapped: str | None,
) -> str:
    """One node's ``<g>``: box, glyph, name, detail line, a map's ring."""
    x, y = at
    label = escape(name if len(name) <= 19 else name[:18] + "…")
    ink = "#fff" if state in DARK else "#111"
    stroke = 3 if join else 1.2
    ring = ""
    if mapped is not None:
        items = (node.items if node else None) or {}
        share = items.get("done", 0) / items["total"] if items.get("total") else 0.0
        c = 2 * math.pi * RING_R
        cx, cy = x + BOX_W - RING_R - 6, y + BOX_H / 2
        ring = (
            f'<circle cx="{cx:.0f}" cy="{cy:.0f}" r="{RING_R}" fill="none" stroke="#fff" '
            f'stroke-opacity=".5" stroke-width="4"/><circle class="ring" cx="{cx:.0f}" '
            f'cy="{cy:.0f}" r="{RING_R}" fill="none" stroke="{ink}" stroke-width="4" '
            f'stroke-dasharray="{share * c:.1f} {c:.1f}" transform="rotate(-90 {cx:.0f} '
            f'{cy:.0f})" data-share="{share:.3f}"/>'
        )
    dashed = ' stroke-dasharray="5 3"' if state == "upstream_failed" else ""
    return (
        f'<g class="node" id="node-{escape(name)}" data-node="{escape(name)}" '
        f'data-state="{state}" data-map="{1 if mapped else 0}" tabindex="0" role="button" '
        f'aria-label="{escape(name)}: {state}" style="cursor:pointer">'
        f"<title>{escape(name)}: {state}</title>"
        f'<rect x="{x:.0f}" y="{y:.0f}" width="{BOX_W}" height="{BOX_H}" rx="6" '
        f'fill="{STATE_COLORS.get(state, "#FFFFFF")}" stroke="#333" stroke-width="{stroke}"'
        f"{dashed}/>"
        f'<text class="glyph" x="{x + 14:.0f}" y="{y + 19:.0f}" text-anchor="middle" '
        f'fill="{ink}">{STATE_GLYPHS.get(state, "?")}</text>'
        f'<text class="name" x="{x + 26:.0f}" y="{y + 19:.0f}" fill="{ink}">{label}</text>'
        f'<text class="detail" x="{x + 26:.0f}" y="{y + 35:.0f}" fill="{ink}" '
        f'font-size="11">{escape(detail(node))}</text>{ring}</g>'
    )
