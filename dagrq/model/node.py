"""One node and how it is called: :class:`Node`, its arguments, its output's type. Pure.

Every executor (a worker's attempt, an item of a map, :func:`dagrq.model.local.run_local`) calls a
node the same way: :func:`build_kwargs` gives the parents' outputs decoded into the node's own
annotations and the run parameters coerced into theirs; a mapped node's item comes from
:func:`iter_items`, and its results become one list by :func:`join_items`.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any, Generic, ParamSpec, TypeVar, get_args, get_type_hints

from pydantic import ValidationError

from ..errors import BranchError, NodeDefinitionError, OutputTooLarge, OutputTypeError
from .codec import Codec, is_untyped, type_adapter
from .commands import command_of
from .objects import is_ref, resolve
from .options import NodeOptions, name_problem
from .params import coerce, type_name
from .plan import NodeSpec
from .waits import body_waiting

P = ParamSpec("P")
R = TypeVar("R")


class Node(Generic[P, R]):
    """One decorated function: its name, options and signature. Calling it calls the function.

    Attributes:
        fn: the plain function.
        name: the node's name in the DAG.
        options: the :class:`~dagrq.model.options.NodeOptions` it was declared with.
        map_over: the parent a mapped node (``@dag.map``) runs once per item of, else None.
        chunk: items per RQ job of a mapped node.
        branch: a branch (``@dag.branch``): it returns the name(s) of the children to follow.

    Raises:
        NodeDefinitionError: a ``*args``, ``**kwargs`` or positional-only parameter.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        options: NodeOptions,
        map_over: str | None = None,
        chunk: int = 1,
    ) -> None:
        self.fn = fn
        self.options = options
        self.map_over = map_over
        self.chunk = chunk
        self.branch = False
        #: what a sensor waits for (:class:`~dagrq.model.waits.Waiting`), set by ``@dag.sensor``
        self.waiting: Any = None
        self.name: str = options.name or fn.__name__
        problem = name_problem(self.name)
        if problem is not None:
            raise NodeDefinitionError(f"{problem}; rename the function or give name=...")
        self._raw_signature = inspect.signature(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        for param in self._raw_signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise NodeDefinitionError(
                    f"node {self.name!r}: parameter {param.name!r} is {param.kind.description}; "
                    "dagrq passes every input by keyword, declare it as a plain parameter"
                )

    @cached_property
    def output_adapter(self) -> Any:
        """The pydantic adapter a returned value is checked with, or None when the return
        annotation is missing or one pydantic cannot check (a TypeVar, a forward reference);
        made once (a map's items are checked with it one by one)."""
        annotation = self.signature.return_annotation
        if annotation is inspect.Signature.empty or is_untyped(annotation):
            return None
        try:
            return type_adapter(annotation)
        except Exception:
            return None

    @cached_property
    def signature(self) -> inspect.Signature:
        """The signature with string annotations (``from __future__ import annotations``)
        resolved in the function's module.

        Raises:
            NodeDefinitionError: an annotation names something the module does not define.
        """
        if command_of(self.fn) is not None or body_waiting(self.fn) is not None:
            return self._raw_signature  # built from the command's (or wait's) inputs and output
        try:
            hints = get_type_hints(self.fn, include_extras=True)
        except Exception as exc:
            raise NodeDefinitionError(
                f"node {self.name!r}: an annotation cannot be resolved ({one_line_error(exc)}); "
                "import or define that type in the node's module"
            ) from None
        raw = self._raw_signature
        params = [
            p.replace(annotation=hints.get(p.name, p.annotation)) for p in raw.parameters.values()
        ]
        return raw.replace(
            parameters=params, return_annotation=hints.get("return", raw.return_annotation)
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Call the plain function (a node stays unit-testable)."""
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<dagrq.Node {self.name}>"


def build_kwargs(
    node: Node[Any, Any],
    spec: NodeSpec,
    outputs: Mapping[str, bytes | None],
    params: Mapping[str, Any],
    codec: Codec,
) -> dict[str, Any]:
    """The keyword arguments of one node call: parents' outputs and run parameters.

    A data parent with no stored output (it failed or was skipped and the rule still fired)
    gives ``None``. A mapped node's item parameter is left out: its caller sets it per item.
    Run parameters are re-validated against the node's own annotations, so a ``date``
    parameter arrives as a ``date`` after its JSON trip.
    """
    sig = node.signature.parameters
    kwargs: dict[str, Any] = {}
    for parent in spec.data_parents:
        if parent == spec.map_over:
            continue
        blob = outputs.get(parent)
        kwargs[parent] = None if blob is None else codec.loads(blob, sig[parent].annotation)
    for pname in spec.params:
        if pname in params:
            kwargs[pname] = coerce(sig[pname].annotation, params[pname])
    return kwargs


def item_annotation(node: Node[Any, Any]) -> Any:
    """The annotation one item of a mapped node is decoded into (its item parameter's)."""
    return node.signature.parameters[node.map_over or ""].annotation


def output_annotation(node: Node[Any, Any]) -> Any:
    """The type a node's stored output decodes to: its return annotation; for a mapped node a
    list of it, each item optional (a skipped or failed item's result is ``None``); ``None``:
    untyped."""
    ret = node.signature.return_annotation
    if ret is inspect.Signature.empty:
        return None
    return list[ret | None] if node.map_over is not None else ret  # type: ignore[valid-type]


def stored_type(node: Node[Any, Any]) -> Any:
    """The stored output's type as a plan records it (``NodeSpec.returns``): the return
    annotation, a list of it for a mapped node (a reader makes each item optional, see
    :func:`optional_items`); ``None``: untyped."""
    ret = node.signature.return_annotation
    if ret is inspect.Signature.empty:
        return None
    return list[ret] if node.map_over is not None else ret  # type: ignore[valid-type]


def optional_items(annotation: Any) -> Any:
    """``list[T]`` as ``list[T | None]`` (a mapped node's results, read from its plan's type).

    Examples:
        >>> optional_items(list[int])
        list[int | None]
    """
    (item,) = get_args(annotation) or (Any,)
    return list[item | None]  # type: ignore[valid-type]


def iter_items(codec: Codec, blob: bytes | None, source: str) -> list[Any]:
    """The items a mapped node runs over: ``source``'s output as a list (a dict's keys).

    Raises:
        TypeError: when that output is not iterable (or a string).
    """
    value = None if blob is None else codec.loads(blob, None)
    if isinstance(value, dict):
        return list(value)
    if value is None or isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"the output of {source!r} is {type(value).__name__}, not a list to map over; "
            f"return a list (or any iterable) from {source!r}"
        )
    return list(value)


def join_items(codec: Codec, blobs: list[bytes | None]) -> bytes:
    """One serialized list from serialized items (``None`` where an item has no result).

    Examples:
        >>> from dagrq.model.codec import get_codec
        >>> join_items(get_codec("json"), [b"1", None, b'"x"'])
        b'[1,null,"x"]'
    """
    if any(is_ref(b) for b in blobs):  # items kept in the object store
        blobs = [None if b is None else resolve(b) for b in blobs]
    if codec.name == "json":
        return b"[" + b",".join(b if b is not None else b"null" for b in blobs) + b"]"
    blob: bytes = codec.dumps([None if b is None else codec.loads(b, None) for b in blobs])
    return blob


def serialize_output(codec: Codec, spec: NodeSpec, value: Any) -> bytes:
    """``value`` as stored bytes.

    Raises:
        TypeError: naming the node and the fix, when the codec cannot serialize the value.
        OutputTooLarge: the bytes are over the node's ``max_output_bytes``.
    """
    try:
        blob = codec.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"output of node {spec.name!r} cannot be stored as {codec.name}: {exc}; "
            "return JSON-friendly data or use DAG(..., serializer='pickle')"
        ) from exc
    if len(blob) > spec.max_output_bytes:
        raise OutputTooLarge(spec.name, len(blob), spec.max_output_bytes)
    return blob


def check_output_type(node: Node[Any, Any], value: Any) -> None:
    """Check ``value`` against ``node``'s return annotation (pydantic, strict: ``-> int``
    refuses ``"5"``); an annotation pydantic cannot check is not checked.

    Raises:
        OutputTypeError: naming the node, the annotation and what was returned.
    """
    adapter = node.output_adapter
    if adapter is None:
        return
    annotation = node.signature.return_annotation
    try:
        adapter.validate_python(value, strict=True)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        detail = f"{where}: {first['msg']}" if where else first["msg"]
        raise OutputTypeError(
            node.name, type_name(annotation), type(value).__name__, detail
        ) from None


def chosen_children(spec: NodeSpec, value: Any) -> tuple[str, ...]:
    """The children a branch's return value chooses: one name, or a list of names (None or
    an empty list: none).

    Raises:
        BranchError: a name that is not one of the branch's children.

    Examples:
        >>> spec = NodeSpec(name="pick", children=("big", "small"), branch=True)
        >>> chosen_children(spec, "big"), chosen_children(spec, ["small", "big"])
        (('big',), ('small', 'big'))
    """
    names = [value] if isinstance(value, str) else list(value or [])
    bad = [n for n in names if n not in spec.children]
    if bad:
        raise BranchError(
            f"branch {spec.name!r} chose {bad[0]!r}, which is not one of its children "
            f"({', '.join(spec.children)}); return one of those names, or a list of them"
        )
    return tuple(dict.fromkeys(names))


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line.

    Examples:
        >>> one_line_error(ValueError("bad\\nthing"))
        'ValueError: bad thing'
    """
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
