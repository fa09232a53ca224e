"""Event-triggered runs: every ``dagrq worker`` serving a DAG with ``triggers=`` reads the
event stream in that DAG's consumer group and starts one run per matching event (exactly
once: the run is written under a key of the DAG and the event id, whichever worker reads it;
an event a worker took and never acknowledged is taken over after a minute). See
docs/waits.md."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from ..cluster import home_shard
from ..model.dag import DAG
from ..model.events import Event
from ..model.node import one_line_error
from ..store import keys, lifecycle, waits
from .streams import StreamThread

log = logging.getLogger(__name__)


def start_runs(connection: Any, dag: DAG, event: waits.Emitted) -> list[str]:
    """Start one run of ``dag`` for each of its triggers ``event`` (read on ``connection``)
    matches (each once, ever: a second call starts nothing); their ids. An event whose params
    the DAG refuses starts nothing and is logged. On a Redis Cluster a DAG under a shared
    limit gets its runs on the first shard, where its limits are counted, whichever shard's
    stream held the event (its guard names that shard: stream ids repeat across shards)."""
    target = home_shard(connection) if dag.plan.flow_controlled else connection
    origin = "" if target is connection else f"s{connection.shard}/"
    made = []
    for n, trigger in enumerate(dag.triggers):
        if trigger.name != event.name:
            continue
        seen = Event(event.name, event.data, event.id, event.key)
        try:
            params = dag.validate_params(trigger.params_for(seen))
        except Exception as exc:  # a DagrqError, or the params function's own
            why = one_line_error(exc)
            log.error("event %s %s: no run of %s: %s", event.name, event.id, dag.name, why)
            continue
        run = lifecycle.create_if(
            target,
            dag.plan,
            params,
            _once(keys.event_run_key(dag.name, f"{origin}{event.id}#{n}"), dag.ttl_s),
            trigger=f"event {event.name} {event.id}",
            tags=(f"event:{event.name}",),
        )
        if run is not None:
            log.info("event %s %s -> run %s of %s", event.name, event.id, run.run_id, dag.name)
            made.append(run.run_id)
    return made


def _once(key: str, ttl_s: int) -> lifecycle.Guard:
    """A guard that lets one run be written under ``key`` (which then names it)."""

    def allowed(pipe: Any) -> bool:
        return not pipe.exists(key)

    def write(pipe: Any, run_id: str) -> None:
        pipe.set(key, run_id, ex=ttl_s)

    return lifecycle.Guard(watch=[key], allowed=allowed, write=write)


class TriggerThread(StreamThread):
    """Reads the event stream for the DAGs with triggers until stopped."""

    label = "event triggers"

    def __init__(self, connect: Callable[[], Any], dags: Sequence[DAG]) -> None:
        super().__init__(connect, [d for d in dags if d.triggers], drain=False)

    def subscribe(self, dag: DAG) -> None:
        """Make ``dag``'s consumer group of the event stream."""
        waits.subscribe(self.connection, dag.name)

    def step(self) -> int:
        """Read and handle what is waiting for each DAG; how many events were read."""
        seen = 0
        for dag in self.dags:
            for event in waits.read_events(self.connection, dag.name, self.consumer):
                start_runs(self.connection, dag, event)
                waits.acknowledged(self.connection, dag.name, event.id)
                seen += 1
        return seen
