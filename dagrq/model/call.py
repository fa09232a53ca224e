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

import inspect
import logging
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Literal, NamedTuple

from ..errors import NodeStopped, Skip
from .cache import DEFAULT_TTL_S, Cache, Entry, cache_key, custom_parts, input_parts
from .codec import Codec
from .node import Node, check_output_type, chosen_children, output_annotation, serialize_output
from .plan import NodeSpec

log = logging.getLogger(__name__)

#: the ways a body call ends: ``cached`` is the one where the body did not run (its output was
#: kept from an earlier run with the same code and inputs, :func:`from_cache`)
#: ``again``: a sensor's body returned None (poke again later)
CallState = Literal["succeeded", "skipped", "failed", "cached", "again"]


class Outcome(NamedTuple):
    """How one call of a node body ended (a tuple: made once per item of a map).

    Attributes:
        state: ``succeeded``, ``skipped`` (it raised :class:`~dagrq.errors.Skip`) or ``failed``.
        output: the serialized output (``succeeded``).
        chosen: the children a branch chose (``succeeded``, branches only).
        reason: why it skipped (the Skip's reason, or a default); for ``cached``, the run
            the output was kept from.
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
        if value is None and node.waiting is not None:  # a sensor: not yet
            return Outcome("again")
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


def node_key(
    node: Node[Any, Any],
    spec: NodeSpec,
    dag: str,
    serializer: str,
    outputs: Mapping[str, bytes | None],
    params: Mapping[str, Any],
    inputs: Callable[[], Mapping[str, Any]],
    item: bytes | None = None,
) -> str | None:
    """The cache key of a call of ``node`` of DAG ``dag`` (None when the node is not cached):
    its code version and its inputs as stored (``outputs``, ``params``), or what its
    ``cache_key=`` function says of its decoded ``inputs``; a mapped node's ``item`` too. A
    ``cache_key`` function that raises makes the call uncached (the body runs; the error is
    the body's to meet)."""
    if not spec.cache or spec.code_version is None:
        return None
    custom = node.options.cache_key
    if custom is not None:
        try:
            parts = custom_parts(custom, inputs())
        except Exception:
            return None
    else:
        parts = input_parts(spec.data_parents, outputs, spec.params, params)
    if item is not None:
        parts.append(b"i:" + item)
    return cache_key(serializer, f"{dag}.{spec.name}", spec.code_version, parts)


def from_cache(node: Node[Any, Any], codec: Codec, entry: Entry | None) -> Outcome | None:
    """The ``cached`` outcome of a hit, or None for a miss. An entry the codec cannot read back
    into the node's return type (damaged, or from a changed type) is a miss, logged."""
    if entry is None:
        return None
    ret = node.signature.return_annotation  # a mapped node's entries are items
    annotation = None if ret is inspect.Signature.empty else ret
    try:
        codec.loads(entry.output, annotation if node.map_over else output_annotation(node))
    except Exception as exc:
        log.warning("cache entry of %s unreadable, ignored (a miss): %s", node.name, exc)
        return None
    return Outcome("cached", output=entry.output, reason=entry.run_id)


def keep(cache: Cache, spec: NodeSpec, key: str | None, outcome: Outcome, run_id: str) -> None:
    """Keep a succeeded call's output under ``key`` (nothing for another outcome, or no key)."""
    if key is not None and outcome.state == "succeeded":
        ttl = spec.cache_ttl or DEFAULT_TTL_S
        cache.put(spec.name, key, Entry(outcome.output, run_id, time.time()), ttl)
