"""How node outputs become bytes in Redis and back: JSON through pydantic, or opt-in pickle.

Decoding is typed: a child's parameter annotation (``list[Order]``, ``datetime``, a pydantic
model, a dataclass) is what the stored JSON is validated into, so a node receives the same
types whether it ran in-process (:meth:`DAG.run_local`) or on a worker.

Examples:
    >>> from datetime import date
    >>> codec = get_codec("json")
    >>> codec.loads(codec.dumps({"d": date(2026, 11, 27)}), dict[str, date])
    {'d': datetime.date(2026, 11, 27)}
    >>> codec.loads(codec.dumps([1, 2]), None)
    [1, 2]
"""

from __future__ import annotations

import datetime
import decimal
import functools
import inspect
import json
import operator
import pickle
import re
import types
import typing
import uuid
from typing import Any, Literal, Protocol

from pydantic import TypeAdapter
from pydantic_core import to_json

from .objects import resolve

SerializerName = Literal["json", "pickle"]


class Codec(Protocol):
    """Turns one node output into bytes and back."""

    name: str

    def dumps(self, value: Any) -> bytes:
        """Serialize ``value``; raise ``TypeError``/``ValueError`` when it cannot be."""
        ...

    def loads(self, raw: bytes, annotation: Any) -> Any:
        """Deserialize ``raw``; coerce into ``annotation`` when one is given."""
        ...


@functools.lru_cache(maxsize=1024)
def type_adapter(annotation: Any) -> TypeAdapter[Any]:
    """pydantic's ``TypeAdapter`` for ``annotation``, built once per annotation.

    Raises:
        TypeError: when pydantic cannot build a schema for the annotation.
    """
    return TypeAdapter(annotation)


#: the types a stored plan may name in a node's return type (``NodeSpec.returns``): standard
#: ones only, so that a reader without the DAG's code can rebuild the type, and nothing else
SAFE_TYPES: dict[str, Any] = {
    "Any": Any,
    "None": type(None),
    "bool": bool,
    "int": int,
    "float": float,
    "str": str,
    "bytes": bytes,
    "list": list,
    "dict": dict,
    "set": set,
    "frozenset": frozenset,
    "tuple": tuple,
    "datetime.datetime": datetime.datetime,
    "datetime.date": datetime.date,
    "datetime.time": datetime.time,
    "datetime.timedelta": datetime.timedelta,
    "decimal.Decimal": decimal.Decimal,
    "uuid.UUID": uuid.UUID,
}
_NAMES = {id(v): k for k, v in SAFE_TYPES.items()}
_TOKEN = re.compile(r"\s*([A-Za-z_][\w.]*|\.\.\.|[\[\],|])")


def type_expr(annotation: Any) -> str | None:
    """``annotation`` as text a reader can rebuild with :func:`parse_type_expr` when it is
    made of :data:`SAFE_TYPES` only (containers, unions and ``None`` included); else None.

    Examples:
        >>> type_expr(dict[str, list[datetime.date]]), type_expr(int | None)
        ('dict[str, list[datetime.date]]', 'int | None')
        >>> type_expr(re.Pattern) is None
        True
    """
    if annotation is None:
        return "None"
    if annotation is Ellipsis:
        return "..."
    if id(annotation) in _NAMES:
        return _NAMES[id(annotation)]
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    parts = [type_expr(a) for a in args]
    if any(p is None for p in parts):
        return None
    if origin in (typing.Union, types.UnionType):
        return " | ".join(str(p) for p in parts)
    if origin in (list, dict, set, frozenset, tuple) and parts:
        return f"{_NAMES[id(origin)]}[{', '.join(str(p) for p in parts)}]"
    return None


def parse_type_expr(expr: str) -> Any:
    """The type :func:`type_expr` wrote (names outside :data:`SAFE_TYPES` are refused).

    Examples:
        >>> parse_type_expr("dict[str, list[datetime.date]]")
        dict[str, list[datetime.date]]
        >>> parse_type_expr("set[int] | None")
        set[int] | None

    Raises:
        ValueError: not such an expression.
    """
    tokens = _TOKEN.findall(expr)
    if "".join(tokens) != "".join(expr.split()):
        raise ValueError(f"not a type expression: {expr!r}")
    pos = 0

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise ValueError(f"type expression ends early: {expr!r}")
        pos += 1
        return str(tokens[pos - 1])

    def union() -> Any:
        nonlocal pos
        found = [atom()]
        while pos < len(tokens) and tokens[pos] == "|":
            pos += 1
            found.append(atom())
        return functools.reduce(operator.or_, found) if len(found) > 1 else found[0]

    def atom() -> Any:
        nonlocal pos
        name = take()
        if name == "...":
            return Ellipsis
        if name not in SAFE_TYPES:
            raise ValueError(f"type {name!r} is not one a stored plan may name")
        base = SAFE_TYPES[name]
        if pos < len(tokens) and tokens[pos] == "[":
            pos += 1
            args = [union()]
            while tokens[pos] == ",":
                pos += 1
                args.append(union())
            if take() != "]":
                raise ValueError(f"unbalanced brackets in {expr!r}")
            return base[tuple(args)] if len(args) > 1 else base[args[0]]
        return base

    out = union()
    if pos != len(tokens):
        raise ValueError(f"trailing text in type expression {expr!r}")
    return out


def is_untyped(annotation: Any) -> bool:
    """True for "no annotation": ``None``, ``inspect.Parameter.empty`` or ``Any``."""
    return annotation is None or annotation is inspect.Parameter.empty or annotation is Any


class JSONCodec:
    """JSON by pydantic: dicts, lists, scalars, datetimes, pydantic models, dataclasses."""

    name = "json"

    def dumps(self, value: Any) -> bytes:
        """``value`` as JSON bytes (pydantic's encoder)."""
        return to_json(value)

    def loads(self, raw: bytes, annotation: Any) -> Any:
        """JSON bytes (or a reference to them in the object store) back to Python, validated
        into ``annotation`` when it is given."""
        raw = resolve(raw)
        if is_untyped(annotation):
            return json.loads(raw)
        try:
            return type_adapter(annotation).validate_json(raw)
        except TypeError:  # an annotation pydantic cannot build a schema for
            return json.loads(raw)


class PickleCodec:
    """Pickle, for outputs JSON cannot carry; opt in with ``DAG(name, serializer="pickle")``."""

    name = "pickle"

    def dumps(self, value: Any) -> bytes:
        """``value`` pickled (highest protocol)."""
        return pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)

    def loads(self, raw: bytes, annotation: Any) -> Any:
        """Unpickle ``raw`` (or the object it refers to; only ever for a DAG that opted in to
        pickle)."""
        raw = resolve(raw)
        return pickle.loads(raw)


_CODECS: dict[str, Codec] = {"json": JSONCodec(), "pickle": PickleCodec()}


def get_codec(name: str) -> Codec:
    """The codec called ``name`` (``json`` or ``pickle``); ``ValueError`` for any other."""
    try:
        return _CODECS[name]
    except KeyError:
        raise ValueError(f"serializer {name!r} is not one of: json, pickle") from None
