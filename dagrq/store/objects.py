"""Where a run's big values go: its DAG's object store (:mod:`dagrq.model.objects`), with Redis
keeping references; and the sweep that deletes the objects of runs and cache entries that are
gone (Redis TTLs cannot delete objects).

Every write of a run's values goes through :func:`kept` (outputs, map items, item results, a
node marked by hand; not an output a child's concurrency key is read from, which the claim
reads inside Redis) and of a cache entry's through :func:`cached`; readers resolve references
in the codec, so nothing else knows that a value was offloaded.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from .. import cluster
from ..model.flow import key_source
from ..model.objects import OutputStore
from ..model.plan import Plan
from . import keys, runkeys

log = logging.getLogger(__name__)


def kept(plan: Plan, run_id: str, node: str, blob: bytes) -> bytes:
    """What Redis keeps of ``node``'s value ``blob`` in run ``run_id``: ``blob`` itself, or
    (over the DAG's ``offload_over``) a reference to a new object holding it."""
    store = plan.output_store
    if store is None or not blob or len(blob) <= store.over or _keys_a_child(plan, node):
        return blob
    return store.offload(blob, run_id, node)


def _keys_a_child(plan: Plan, node: str) -> bool:
    """True when a child's concurrency key is a field of ``node``'s output: the worker's
    claim reads it inside Redis (``claim.lua``), so that output stays there."""
    spec = plan.specs.get(node)
    for child in spec.children if spec is not None else ():
        key = plan.specs[child].concurrency_key
        source, field = key_source(key) if key is not None else ("", None)
        if source == node and field is not None:
            return True
    return False


def cached(store: OutputStore | None, blob: bytes, dag: str, node: str, key: str) -> bytes:
    """What a cache entry keeps of ``blob``: an object of its own when it is big (a run's
    object goes with its run; the entry outlives it)."""
    return blob if store is None else store.cached(blob, dag, node, key)


def sweep(connection: Any, stores: Iterable[OutputStore]) -> int:
    """Delete, in each of ``stores``, the objects of runs no longer in Redis (expired or
    purged) and of cache entries evicted or expired. Returns how many were deleted; a store
    that cannot be listed is logged and skipped. On a cluster, each run is looked for on its
    own shard and each cache entry on every shard (shards keep entries of their own, and
    entries of the same key share one object), whichever shard ``connection`` is."""
    deleted = 0
    for store in {s.url: s for s in stores}.values():
        try:
            deleted += store.sweep(
                lambda runs: _runs_exist(connection, runs),
                lambda entries: _entries_exist(connection, entries),
            )
        except OSError:
            log.exception("sweeping the object store %s", store.url)
    return deleted


def delete_run(plan: Plan | None, run_id: str) -> None:
    """Delete the objects of run ``run_id`` (a purge), if its DAG keeps any."""
    if plan is not None and plan.output_store is not None:
        plan.output_store.delete_run(run_id)


def _runs_exist(connection: Any, run_ids: list[str]) -> list[bool]:
    """Whether each of ``run_ids`` still has its record, asked of the run's own shard."""
    found = [False] * len(run_ids)
    by_shard: dict[int, tuple[Any, list[int]]] = {}
    for i, run_id in enumerate(run_ids):
        client = cluster.for_run(connection, run_id)
        by_shard.setdefault(id(client), (client, []))[1].append(i)
    for client, places in by_shard.values():
        names = [runkeys.run_key(run_ids[i]) for i in places]
        for i, alive in zip(places, _exist(client, names), strict=True):
            found[i] = alive
    return found


def _entries_exist(connection: Any, entries: list[tuple[str, str, str]]) -> list[bool]:
    """Whether each cache entry ``(dag, node, key)`` is kept by any shard."""
    names = [keys.cache_entry_key(d, n, k) for d, n, k in entries]
    found = [False] * len(names)
    for client in cluster.every_shard(connection):
        found = [a or b for a, b in zip(found, _exist(client, names), strict=True)]
    return found


def _exist(connection: Any, names: list[str]) -> list[bool]:
    """Whether each of ``names`` exists, in one round trip."""
    with connection.pipeline(transaction=False) as pipe:
        for name in names:
            pipe.exists(name)
        return [bool(n) for n in pipe.execute()]
