"""Pools: named sets of slots shared by every DAG (``@dag.node(pool="warehouse")``).

A node declared with ``pool="warehouse", pool_slots=n`` takes ``n`` slots of the pool while
an attempt of it runs (from its claim by a worker to the attempt's end); when the pool is
full it waits (state ``waiting``), holding no worker. A pool nobody has sized has
:data:`DEFAULT_SIZE` slots. See docs/flow-control.md.

Example::

    import redis, dagrq
    dagrq.pools.set(redis.Redis(), "warehouse", 5)
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable
from typing import Any

from .model.flow import DEFAULT_POOL_SIZE
from .store import flow
from .store.flow import Holder, Limit

#: the slots of a pool that was never sized
DEFAULT_SIZE = DEFAULT_POOL_SIZE

__all__ = ["DEFAULT_SIZE", "Holder", "Limit", "list", "reset", "set"]


def set(connection: Any, name: str, size: int) -> tuple[int, int]:
    """Size pool ``name`` to ``size`` slots (0 stops it letting anything in). It takes effect
    at once: a pool that grew lets its first waiters in in the same step; one that shrank
    below what is held stops nothing that runs and lets nobody in until enough is given back.

    Returns ``(size, slots in use)``.

    Raises:
        ValueError: a name that is not letters, digits, ``_``, ``.`` and ``-``, or a size that
            is not a whole number >= 0.
    """
    return flow.set_pool(connection, name, size)


def reset(connection: Any, name: str) -> tuple[int, int]:
    """Forget pool ``name``'s size: it has :data:`DEFAULT_SIZE` slots again. Returns
    ``(size, slots in use)``."""
    return flow.set_pool(connection, name, None)


def list(connection: Any, names: Iterable[str] = ()) -> builtins.list[Limit]:
    """Every pool, node concurrency limit and rate limit in use or ever sized (and the
    pools in ``names``), with who holds slots and who waits: what ``dagrq pools`` shows."""
    return flow.limits(connection, names)
