"""The hook streams: news of runs that ended and attempts to be retried, for the workers
that run alert hooks and emit run spans (docs/observability.md).

The Lua step that ends a run of a DAG with hooks (or a traced run) appends ``{run, event:
end, state}`` to the DAG's stream (``dagrq:hooks:<dag>``, about
:data:`~dagrq.store.keys.HOOKS_MAX` kept); ``requeue.lua`` appends ``{run, event: retry,
node, state: <attempt>}``. Every worker serving the DAG reads the stream in one consumer
group, so each entry goes to one of them (one that died holding it loses it to another after
a minute), and :func:`claim_once` lets one handler act on it even then.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import keys
from .waits import make_group, read_group

#: a reader that took an entry and did not acknowledge it this long ago is presumed dead
IDLE_MS = 60_000


@dataclass(frozen=True)
class News:
    """One entry of a hook stream."""

    id: str
    dag: str
    run_id: str
    #: ``end`` or ``retry``
    event: str
    #: the run's end state (``end``) or the failed attempt's number (``retry``)
    state: str
    node: str | None
    #: when (unix seconds, the Lua step's clock)
    ts: float

    @property
    def key(self) -> str:
        """What makes the event one: ``end``, or ``retry:<node>:<attempt>``."""
        return "end" if self.event == "end" else f"retry:{self.node}:{self.state}"


def subscribe(connection: Any, dag: str) -> None:
    """Make DAG ``dag``'s hook stream's consumer group, if it has none."""
    make_group(connection, keys.hooks_key(dag), keys.HOOKS_GROUP)


def read(connection: Any, dag: str, consumer: str, *, count: int = 50) -> list[News]:
    """News for DAG ``dag`` not yet handled (see the module's docstring); each is to be
    :func:`acknowledged`."""
    entries = read_group(
        connection, keys.hooks_key(dag), keys.HOOKS_GROUP, consumer, count=count, idle_ms=IDLE_MS
    )
    return [
        News(
            entry_id,
            dag,
            f["run"],
            f.get("event", "end"),
            f.get("state", ""),
            f.get("node") or None,
            float(f.get("ts") or 0),
        )
        for entry_id, f in entries
    ]


def acknowledged(connection: Any, dag: str, entry_id: str) -> None:
    """Entry ``entry_id`` of DAG ``dag``'s stream was handled: no reader gets it again."""
    connection.xack(keys.hooks_key(dag), keys.HOOKS_GROUP, entry_id)


def claim_once(connection: Any, news: News, ttl_s: int) -> bool:
    """True for the one caller that may act on ``news`` (kept ``ttl_s``): a callback runs
    once even when a reader presumed dead had taken it."""
    return bool(connection.set(keys.hook_done_key(news.run_id, news.key), 1, nx=True, ex=ttl_s))


def tracing_here(connection: Any) -> None:
    """Say that a worker traces (for :data:`~dagrq.store.keys.TRACING_TTL_S`): runs ending
    meanwhile tell their DAG's hook stream, for their run spans."""
    connection.set(keys.TRACING_KEY, 1, ex=keys.TRACING_TTL_S)
