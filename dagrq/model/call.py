"""How a node body is called: :func:`call`, the one place every executor calls it. Pure.

A worker's attempt (:mod:`dagrq.jobs.attempt`), a map's items (:mod:`dagrq.jobs.fanout`) and
the in-process executor (:mod:`dagrq.model.local`) all call a node through :func:`call`, so they
agree on what a body's end means: its output checked against the return annotation, a
branch's choice, the serialized bytes, and how an exception is classified. A new node option
that acts around the body (a cache, a limit, a wait) hooks in here once.

Examples:
    >>> from dagrq.model.codec import get_codec
    >>> from dagrq.model.node import Node
    >>> from dagrq.model.options import NodeOptions
    >>> from dagrq.model.plan import NodeSpec
    >>> def double(x: int) -> int:
    ...     return x * 2
    >>> node, spec = Node(double, NodeOptions()), NodeSpec(name="double")
    >>> call(node, spec, get_codec("json"), lambda: {"x": 4})
    Outcome(state='succeeded', output=b'8', chosen=None, reason='', error=None)
    >>> call(node, spec, get_codec("json"), lambda: {"x": "4"}).state  # "44": not an int
    'failed'
"""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from ..errors import NodeStopped, Skip
from .codec import Codec
from .node import Node, check_output_type, chosen_children, serialize_output
from .plan import NodeSpec

#: the three ways a body call ends
CallState = Literal["succeeded", "skipped", "failed"]


class Outcome(NamedTuple):
    """How one call of a node body ended (a tuple: made once per item of a map).

    Attributes:
        state: ``succeeded``, ``skipped`` (it raised :class:`~dagrq.errors.Skip`) or ``failed``.
        output: the serialized output (``succeeded``).
        chosen: the children a branch chose (``succeeded``, branches only).
        reason: why it skipped (the Skip's reason, or a default).
        error: what it raised (``failed``), any ``BaseException``: ``SystemExit`` fails a
            node, it does not stop its worker.
    """

    state: CallState
    output: bytes = b""
    chosen: tuple[str, ...] | None = None
    reason: str = ""
    error: BaseException | None = None

    @property
    def traceback(self) -> str:
        """The failure's traceback as text ('' unless ``failed``)."""
        if self.error is None:
            return ""
        return "".join(traceback.format_exception(self.error))


def call(
    node: Node[Any, Any],
    spec: NodeSpec,
    codec: Codec,
    inputs: Callable[[], Mapping[str, Any]],
) -> Outcome:
    """Call ``node``'s body once and say how it ended.

    ``inputs`` builds the keyword arguments (decoding parents' outputs into the node's
    annotations): an input that cannot be decoded is the node's failure, like an exception of
    its own. The value returned is checked against the return annotation (strict: ``-> int``
    refuses ``"5"``), a branch's choice is read from it, and it is serialized with ``codec``
    (refused over ``max_output_bytes``); any of those failing fails the call.

    Raises:
        NodeStopped: the node's run was canceled while it ran (never an outcome: the caller
            records nothing).
    """
    try:
        value = node.fn(**inputs())
        check_output_type(node, value)
        chosen = chosen_children(spec, value) if spec.branch else None
        output = serialize_output(codec, spec, value)
    except Skip as skip:
        return Outcome("skipped", reason=skip.reason or "the node raised Skip")
    except NodeStopped:
        raise
    except BaseException as exc:  # SystemExit too: it fails the node, not the worker
        return Outcome("failed", error=exc)
    return Outcome("succeeded", output=output, chosen=chosen)
