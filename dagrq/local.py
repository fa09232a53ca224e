"""``run_local``: a whole DAG in this process, in topological order, without Redis. Pure.

The same validation, trigger rules, argument building and serialization round trip as a
distributed run (every output goes through the DAG's codec and back into the child's
annotation), so unit tests of a pipeline need no server.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

from .codec import Codec
from .errors import RunFailed
from .node import (
    Node,
    build_kwargs,
    item_annotation,
    iter_items,
    join_items,
    one_line_error,
    output_annotation,
    serialize_output,
)
from .plan import NodeSpec, Plan
from .rules import decide

#: ``(serialized output, None)`` or ``(None, one-line error)``
Outcome = tuple[bytes | None, str | None]


def run_local(
    plan: Plan, nodes: Mapping[str, Node[Any, Any]], codec: Codec, params: Mapping[str, Any]
) -> dict[str, Any]:
    """Run every node of ``plan`` once (retries included) in topological order.

    Args:
        plan: the validated plan; its specs are in topological order.
        nodes: the :class:`~dagrq.node.Node` of every spec.
        codec: the DAG's codec.
        params: validated run parameters (JSON-ready, as stored at submit).

    Returns:
        ``{node: output}`` for the nodes that succeeded, decoded into their return types.

    Raises:
        RunFailed: when a node failed; ``.failed`` maps node to error, ``.results`` holds
            the outputs of the nodes that succeeded.
    """
    raw: dict[str, bytes] = {}
    outcome: dict[str, str] = {}
    failed: dict[str, str] = {}
    for name, spec in plan.specs.items():
        counts = {"succeeded": 0, "failed": 0, "skipped": 0}
        for parent in spec.parents:
            counts[outcome[parent]] += 1
        if spec.parents and decide(spec.rule, total=len(spec.parents), **counts) != "fire":
            outcome[name] = "skipped"
            continue
        blob, error = _run_node(nodes[name], spec, raw, params, codec)
        if blob is not None:
            raw[name] = blob
        if error is None:
            outcome[name] = "succeeded"
        else:
            outcome[name], failed[name] = "failed", error
    results = {
        name: codec.loads(raw[name], output_annotation(nodes[name]))
        for name in plan.specs
        if outcome.get(name) == "succeeded"
    }
    if failed:
        problem = RunFailed("local", failed)
        problem.results = results  # type: ignore[attr-defined]
        raise problem
    return results


def _run_node(
    node: Node[Any, Any],
    spec: NodeSpec,
    raw: Mapping[str, bytes],
    params: Mapping[str, Any],
    codec: Codec,
) -> Outcome:
    """One node (every item of a mapped one): its stored output and its error, if any. A
    mapped node with failed items keeps the list of results (None where an item failed)."""
    attempts = 1 + (spec.retry.max if spec.retry else 0)
    try:
        kwargs = build_kwargs(node, spec, raw, params, codec)
        if spec.map_over is None:
            return _call(node, spec, kwargs, attempts, codec)
        items = iter_items(codec, raw.get(spec.map_over), spec.map_over)
    except Exception as exc:
        return None, one_line_error(exc)
    annotation = item_annotation(node)
    blobs: list[bytes | None] = []
    errors: list[str] = []
    for index, item in enumerate(items):
        kwargs[spec.map_over] = codec.loads(codec.dumps(item), annotation)
        blob, error = _call(node, spec, kwargs, attempts, codec)
        blobs.append(blob)
        if error is not None:
            errors.append(f"item {index}: {error}")
    joined = join_items(codec, blobs)  # children get the list, None where an item failed
    if errors:
        return joined, f"{len(errors)} of {len(blobs)} items failed; first: {errors[0]}"
    return joined, None


def _call(
    node: Node[Any, Any], spec: NodeSpec, kwargs: dict[str, Any], attempts: int, codec: Codec
) -> Outcome:
    """Call ``node`` up to ``attempts`` times."""
    error = None
    for _ in range(attempts):
        try:
            return serialize_output(codec, spec, node.fn(**kwargs)), None
        except Exception as exc:
            error = one_line_error(exc)
            traceback.clear_frames(exc.__traceback__)
    return None, error
