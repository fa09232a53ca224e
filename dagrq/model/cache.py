"""Cached outputs, the pure part: a node's code version, its cache key, and the in-process
cache ``run_local`` uses (docs/caching.md).

A cached node's key is a SHA-256 over its DAG's serializer, its name, its *code version* (a
hash of its source, or the ``version=`` its author bumps; a command node's argv, image and
env) and its *inputs*: the serialized output of every data parent it receives, as stored, and
the run parameters it takes, as canonical JSON; or, with ``cache_key=fn``, what ``fn`` returns
for the node's inputs instead of the inputs. A mapped node's item adds the item's bytes.

Examples:
    >>> key = cache_key("json", "total", "v1", [b"p:rows=[1,2]"])
    >>> len(key), key == cache_key("json", "total", "v2", [b"p:rows=[1,2]"])
    (64, False)
"""

from __future__ import annotations

import hashlib
import inspect
import json
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import networkx as nx

from ..errors import ParameterError
from .commands import command_of

#: seconds an entry lives when the node sets no ``cache_ttl`` (a week)
DEFAULT_TTL_S = 7 * 24 * 3600
#: entries kept per DAG when it sets no ``cache_max_entries``; the oldest go first
DEFAULT_MAX_ENTRIES = 10_000
#: bumped when the key's layout changes (every old entry becomes a miss)
KEY_FORMAT = b"dagrq-cache-1"


def code_version(fn: Any, version: str | None) -> str:
    """A node's code version: ``version`` when given, else a hash of its function's source (a
    command node: of its argv, image and env). A function whose source cannot be read (built
    in C, defined in a REPL) hashes its qualified name: give it ``version=``.

    Examples:
        >>> code_version(len, "3")
        '3'
    """
    if version is not None:
        return version
    program = command_of(fn)
    if program is not None:
        text = json.dumps([list(program.argv), program.image, dict(program.env)], sort_keys=True)
    else:
        try:
            text = inspect.getsource(fn)
        except (OSError, TypeError):
            text = f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', fn)}"
    return "src:" + hashlib.sha256(text.encode()).hexdigest()[:16]


def cache_key(serializer: str, node: str, version: str, parts: Sequence[bytes]) -> str:
    """The cache key (64 hex digits) of node ``node`` at code ``version`` with input ``parts``
    (:func:`input_parts`), for a DAG of ``serializer``."""
    digest = hashlib.sha256(KEY_FORMAT)
    for part in (serializer.encode(), node.encode(), version.encode(), *parts):
        digest.update(len(part).to_bytes(8, "big"))  # length first: no two layouts collide
        digest.update(part)
    return digest.hexdigest()


def input_parts(
    data_parents: Sequence[str],
    outputs: Mapping[str, bytes | None],
    param_names: Sequence[str],
    params: Mapping[str, Any],
) -> list[bytes]:
    """What a node's key says of its inputs: each data parent's stored output (``None`` for a
    parent that did not succeed) and each run parameter it takes, as canonical JSON.

    Examples:
        >>> input_parts(["a"], {"a": b"1"}, ["day"], {"day": "2026-12-01", "x": 0})
        [b'p:a=1', b'a:day="2026-12-01"']
    """
    parts = [f"p:{p}=".encode() + (outputs.get(p) or b"\x00") for p in data_parents]
    for name in param_names:
        value = json.dumps(params.get(name), sort_keys=True, default=str)
        parts.append(f"a:{name}={value}".encode())
    return parts


def custom_parts(fn: Callable[..., Any], kwargs: Mapping[str, Any]) -> list[bytes]:
    """The input part of a key when the node gives ``cache_key=fn``: ``fn(**inputs)`` as text
    (the node's decoded inputs; only the names ``fn`` takes are passed)."""
    wanted = inspect.signature(fn).parameters
    takes_all = any(p.kind is p.VAR_KEYWORD for p in wanted.values())
    given = {k: v for k, v in kwargs.items() if takes_all or k in wanted}
    return [b"k:" + str(fn(**given)).encode()]


def refreshed(dag: str, graph: nx.DiGraph, refresh: bool | Sequence[str]) -> str:
    """What a run's ``refresh=`` covers, as stored: ``*`` for every node, else the nodes named
    and every node downstream of them, comma-separated ('' for none).

    Raises:
        ParameterError: a name that is no node of the DAG.
    """
    if refresh is True:
        return "*"
    if not refresh:
        return ""
    names = [refresh] if isinstance(refresh, str) else list(refresh)
    unknown = [n for n in names if n not in graph]
    if unknown:
        raise ParameterError(
            f"refresh: no node {', '.join(map(repr, unknown))} in DAG {dag!r} "
            f"(nodes: {', '.join(graph)})"
        )
    covered = set(names).union(*(nx.descendants(graph, n) for n in names))
    return ",".join(sorted(covered))


@dataclass(frozen=True)
class Entry:
    """A cached output: its bytes (in the DAG's serializer), the run that computed it, when."""

    output: bytes
    run_id: str
    at: float


class Cache(Protocol):
    """Where entries live: Redis for workers (:class:`dagrq.store.cache.RedisCache`), a dict
    for ``run_local`` (:class:`LocalCache`)."""

    def get(self, node: str, key: str) -> Entry | None:
        """The entry of ``key``, or None (a miss)."""

    def put(self, node: str, key: str, entry: Entry, ttl_s: int) -> None:
        """Keep ``entry`` under ``key`` for ``ttl_s`` seconds."""


class LocalCache:
    """An in-process cache, bounded to ``max_entries`` (the oldest go first): what
    ``run_local`` uses unless given a connection, so tests see the hits a worker would."""

    def __init__(self, max_entries: int = DEFAULT_MAX_ENTRIES) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[Entry, float]] = OrderedDict()

    def get(self, node: str, key: str) -> Entry | None:
        """The live entry of ``key``, or None."""
        found = self._entries.get(key)
        if found is None or found[1] < time.time():
            return None
        return found[0]

    def put(self, node: str, key: str, entry: Entry, ttl_s: int) -> None:
        """Keep ``entry``; drop the oldest past ``max_entries``."""
        self._entries[key] = (entry, time.time() + ttl_s)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        """Forget every entry."""
        self._entries.clear()


#: the process-wide cache of ``run_local``
LOCAL = LocalCache()
