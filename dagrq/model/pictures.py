"""DOT and Mermaid text for a DAG, optionally coloured by a run's states. Pure: no I/O.

Joins are drawn with a double border (DOT ``peripheries=2``; Mermaid ``[[...]]``), mapped
nodes as stacks (DOT ``box3d``; Mermaid ``{{...}}``), branches as diamonds (DOT ``diamond``;
Mermaid ``{...}``), order-only ``after=`` edges dashed, run parameters as inputs. With a run,
every node is filled by its state from one colour-blind-safe palette (Okabe-Ito); a mapped
node is labelled with its item counts, a branch with what it chose, a skipped node with its
reason. Output is sorted, so it diffs and snapshots stably.

Examples:
    >>> STATE_COLORS["failed"]
    '#D55E00'
"""

from __future__ import annotations

from collections.abc import Mapping

from .plan import NodeSpec, Plan
from .status import STATE_COLORS, NodeStatus, RunStatus

#: text colour that reads on each fill (black on the others)
_TEXT = {"running": "#FFFFFF", "succeeded": "#FFFFFF", "failed": "#FFFFFF"}


def _label_lines(spec: NodeSpec, node: NodeStatus | None) -> list[str]:
    lines = [spec.name, spec.queue_name]
    if spec.map_over is not None:
        lines.append(
            f"map over {spec.map_over}" + (f", chunk {spec.chunk}" if spec.chunk > 1 else "")
        )
    if spec.branch:
        lines.append("branch")
    if spec.rule != "all_success":
        lines.append(f"trigger {spec.rule}")
    if node is not None:
        state = node.state + (f" ({node.attempts} attempts)" if node.attempts > 1 else "")
        lines.append(state)
        if node.chosen is not None:
            lines.append("chose " + (", ".join(node.chosen) or "nothing"))
        if node.reason:
            lines.append(f"skip: {node.reason}")
        if node.items is not None:
            i = node.items
            lines.append(f"{i['done']:,}/{i['total']:,} items, {i['failed']:,} failed")
    return lines


def _dot_quote(text: str) -> str:
    """A DOT quoted string (backslashes and quotes escaped)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_lines(lines: list[str]) -> str:
    """A quoted DOT label with one line per entry (DOT's ``\\n`` line break)."""
    return "\\n".join(_dot_quote(line) for line in lines).replace('"\\n"', "\\n")


def to_dot(plan: Plan, params: Mapping[str, str], status: RunStatus | None = None) -> str:
    """The DOT text of ``plan``; ``params`` maps each run parameter to its type's name.

    With ``status``, nodes are filled by state and the graph is labelled with the run.
    """
    nodes = status.nodes if status is not None else {}
    title = f"DAG {plan.dag}" + (f" · run {status.id} · {status.state}" if status else "")
    out = [
        f"digraph {_dot_quote(plan.dag)} {{",
        f'  graph [rankdir=LR, fontname="Helvetica", label={_dot_quote(title)}, labelloc=t];',
        '  node [shape=box, style="rounded,filled", fillcolor="#FFFFFF", fontname="Helvetica"];',
        '  edge [fontname="Helvetica"];',
    ]
    for name in sorted(params):
        out.append(
            f'  {_dot_quote("param:" + name)} [shape=plaintext, style="", '
            f"label={_dot_quote(name + ': ' + params[name])}];"
        )
    for name in sorted(plan.specs):
        spec = plan.specs[name]
        node = nodes.get(name)
        attrs = [f"label={_dot_lines(_label_lines(spec, node))}"]
        if spec.map_over is not None:
            attrs.append("shape=box3d")
        elif spec.branch:
            attrs.append("shape=diamond")
        if spec.is_join:
            attrs.append("peripheries=2")
        if node is not None:
            attrs.append(f'fillcolor="{STATE_COLORS.get(node.state, "#FFFFFF")}"')
            attrs.append(f'fontcolor="{_TEXT.get(node.state, "#000000")}"')
            attrs.append(f"tooltip={_dot_quote(node.error or node.reason or node.state)}")
        out.append(f"  {_dot_quote(name)} [{', '.join(attrs)}];")
    edges = sorted((p, s.name, p in s.data_parents) for s in plan.specs.values() for p in s.parents)
    for parent, child, data in edges:
        style = "" if data else " [style=dashed]"
        out.append(f"  {_dot_quote(parent)} -> {_dot_quote(child)}{style};")
    for name in sorted(params):
        for spec in sorted(plan.specs.values(), key=lambda s: s.name):
            if name in spec.params:
                out.append(
                    f"  {_dot_quote('param:' + name)} -> {_dot_quote(spec.name)} "
                    '[style=dotted, arrowhead=none, color="#888888"];'
                )
    out.append("}")
    return "\n".join(out) + "\n"


def _mm_text(text: str) -> str:
    return text.replace('"', "#quot;")


def to_mermaid(plan: Plan, params: Mapping[str, str], status: RunStatus | None = None) -> str:
    """The Mermaid ``flowchart`` of ``plan``, with the same facts as :func:`to_dot`."""
    nodes = status.nodes if status is not None else {}
    out = ["flowchart LR"]
    for name in sorted(params):
        out.append(f'  param_{name}>"{_mm_text(name + ": " + params[name])}"]')
    for name in sorted(plan.specs):
        spec = plan.specs[name]
        label = _mm_text("<br/>".join(_label_lines(spec, nodes.get(name))))
        if spec.map_over is not None:
            shape = f'{{{{"{label}"}}}}'
        elif spec.branch:
            shape = f'{{"{label}"}}'
        elif spec.is_join:
            shape = f'[["{label}"]]'
        else:
            shape = f'["{label}"]'
        out.append(f"  {name}{shape}")
    edges = sorted((p, s.name, p in s.data_parents) for s in plan.specs.values() for p in s.parents)
    for parent, child, data in edges:
        out.append(f"  {parent} {'-->' if data else '-.->'} {child}")
    for name in sorted(params):
        for spec in sorted(plan.specs.values(), key=lambda s: s.name):
            if name in spec.params:
                out.append(f"  param_{name} --- {spec.name}")
    if nodes:
        used = sorted({n.state for n in nodes.values()})
        for state in used:
            fill = STATE_COLORS.get(state, "#FFFFFF")
            text = _TEXT.get(state, "#000000")
            out.append(f"  classDef {state} fill:{fill},color:{text},stroke:#333")
        for state in used:
            members = sorted(n for n, s in nodes.items() if s.state == state and n in plan.specs)
            if members:
                out.append(f"  class {','.join(members)} {state}")
    return "\n".join(out) + "\n"
