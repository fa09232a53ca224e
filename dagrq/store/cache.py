"""Cached outputs in Redis: entries outside any run, bounded per DAG (docs/caching.md).

An entry is a hash ``dagrq:cache:<dag>:<node>:<key>`` (``o`` the output in the DAG's
serializer, ``r`` the run that computed it, ``t`` when) with its own TTL; the DAG's index
``dagrq:cache:<dag>`` (a sorted set by time) keeps at most the DAG's ``cache_max_entries``,
the oldest evicted when a new one is written (``cache_put.lua``). A lookup is one round trip
(a map's chunk: one for all its items).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from ..cluster import every_shard
from ..model.cache import DEFAULT_MAX_ENTRIES, Entry
from ..model.objects import OutputStore
from . import keys, objects, scripts


class RedisCache:
    """The :class:`~dagrq.model.cache.Cache` of DAG ``dag`` on ``connection``."""

    def __init__(
        self,
        connection: Any,
        dag: str,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        store: OutputStore | None = None,
    ) -> None:
        self.connection, self.dag, self.max_entries = connection, dag, max_entries
        #: the DAG's object store: a big entry is kept there (its own object), not in Redis
        self.store = store

    def get(self, node: str, key: str) -> Entry | None:
        """The entry of ``node`` under ``key``, or None (one round trip)."""
        return self.get_many(node, [key])[0]

    def get_many(self, node: str, keys_: Sequence[str]) -> list[Entry | None]:
        """The entries under ``keys_`` (None where missing), in one round trip."""
        if not keys_:
            return []
        with self.connection.pipeline(transaction=False) as pipe:
            for key in keys_:
                pipe.hmget(keys.cache_entry_key(self.dag, node, key), "o", "r", "t")
            rows = pipe.execute()
        return [_entry(row) for row in rows]

    def put(self, node: str, key: str, entry: Entry, ttl_s: int) -> None:
        """Keep ``entry`` (one round trip)."""
        self.put_many(node, [(key, entry)], ttl_s)

    def put_many(self, node: str, entries: Sequence[tuple[str, Entry]], ttl_s: int) -> None:
        """Keep ``entries`` in one round trip, evicting the DAG's oldest past its bound."""
        if not entries:
            return
        with self.connection.pipeline(transaction=False) as pipe:
            for key, entry in entries:
                scripts.run_script(
                    self.connection,
                    "cache_put",
                    pipe=pipe if len(entries) > 1 else None,  # one: a single EVALSHA
                    keys=[
                        keys.cache_entry_key(self.dag, node, key),
                        keys.cache_index_key(self.dag),
                        keys.CACHE_DAGS_KEY,
                    ],
                    args=[
                        objects.cached(self.store, entry.output, self.dag, node, key),
                        entry.run_id,
                        repr(entry.at),
                        ttl_s,
                        f"{node}:{key}",
                        self.max_entries,
                        self.dag,
                        keys.cache_index_key(self.dag) + ":",
                    ],
                )
            if len(entries) > 1:
                pipe.execute()


def _entry(row: Sequence[bytes | None]) -> Entry | None:
    output, run_id, at = row
    if output is None:
        return None
    try:
        return Entry(output, (run_id or b"").decode(), float(at or 0))
    except (ValueError, UnicodeDecodeError):
        return None  # damaged: a miss


@dataclass(frozen=True)
class Listed:
    """One DAG's entries of one node, as ``dagrq cache ls`` shows them."""

    dag: str
    node: str
    entries: int
    bytes: int
    newest: float
    oldest: float

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready."""
        return self.__dict__.copy()


def listing(connection: Any, dags: Iterable[str] | None = None) -> list[Listed]:
    """Per DAG and node: how many entries, their bytes, the newest and oldest; of ``dags``
    (default: every DAG with entries). Entries whose TTL ran out leave the index here. On a
    cluster, every shard's entries (each shard keeps its own) together."""
    wanted = list(dags) if dags else None
    merged: dict[tuple[str, str], Listed] = {}
    for shard in every_shard(connection):
        for x in _listing_on(shard, wanted):
            seen = merged.get((x.dag, x.node))
            merged[x.dag, x.node] = (
                x
                if seen is None
                else Listed(
                    x.dag,
                    x.node,
                    seen.entries + x.entries,
                    seen.bytes + x.bytes,
                    max(seen.newest, x.newest),
                    min(seen.oldest, x.oldest),
                )
            )
    return [merged[k] for k in sorted(merged)]


def _listing_on(connection: Any, dags: Iterable[str] | None) -> list[Listed]:
    names = (
        sorted(dags) if dags else sorted(_text(d) for d in connection.smembers(keys.CACHE_DAGS_KEY))
    )
    out: list[Listed] = []
    for dag in names:
        members = connection.zrange(keys.cache_index_key(dag), 0, -1, withscores=True)
        with connection.pipeline(transaction=False) as pipe:
            for member, _ in members:
                pipe.hstrlen(keys.cache_index_key(dag) + ":" + _text(member), "o")
            sizes = pipe.execute()
        per: dict[str, list[tuple[float, int]]] = {}
        gone = []
        for (member, at), size in zip(members, sizes, strict=True):
            if not size:
                gone.append(member)
                continue
            per.setdefault(_text(member).rsplit(":", 1)[0], []).append((at, int(size)))
        if gone:
            connection.zrem(keys.cache_index_key(dag), *gone)
        for node, rows in sorted(per.items()):
            times = [t for t, _ in rows]
            out.append(
                Listed(dag, node, len(rows), sum(b for _, b in rows), max(times), min(times))
            )
    return out


def clear(connection: Any, dag: str, node: str | None = None) -> int:
    """Delete ``dag``'s entries (of ``node`` only, when given; on a cluster, on every shard);
    returns how many."""
    return sum(_clear_on(shard, dag, node) for shard in every_shard(connection))


def _clear_on(connection: Any, dag: str, node: str | None) -> int:
    index = keys.cache_index_key(dag)
    members = [_text(m) for m in connection.zrange(index, 0, -1)]
    doomed = [m for m in members if node is None or m.rsplit(":", 1)[0] == node]
    for start in range(0, len(doomed), 500):
        batch = doomed[start : start + 500]
        with connection.pipeline(transaction=False) as pipe:
            pipe.delete(*[index + ":" + m for m in batch])
            pipe.zrem(index, *batch)
            pipe.execute()
    return len(doomed)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
