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

import functools
import inspect
import json
import pickle
from typing import Any, Literal, Protocol

from pydantic import TypeAdapter
from pydantic_core import to_json

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
        """JSON bytes back to Python, validated into ``annotation`` when it is given."""
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
        """Unpickle ``raw`` (only ever for a DAG that opted in to pickle)."""
        return pickle.loads(raw)


_CODECS: dict[str, Codec] = {"json": JSONCodec(), "pickle": PickleCodec()}


def get_codec(name: str) -> Codec:
    """The codec called ``name`` (``json`` or ``pickle``); ``ValueError`` for any other."""
    try:
        return _CODECS[name]
    except KeyError:
        raise ValueError(f"serializer {name!r} is not one of: json, pickle") from None
