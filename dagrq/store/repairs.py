"""The reconciler's queries: what :mod:`dagrq.jobs.reconcile` reads and marks of a run to find
what is stuck, and nothing an attempt needs (:class:`RunRepairs`, a
:class:`~dagrq.store.runs.RunStore` with these added)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from ..errors import RunError, RunNotFound
from ..model.plan import Plan
from . import keys, runkeys
from .runs import RunStore, _decode, load_plan


def rearm_timer(connection: Any, parked: str, due_ms: int) -> bool:
    """Put a parked node's waiter (its ``<node>:parked`` field) back in the timers at
    ``due_ms`` if it is not there (lost with a primary, say): True when it was missing."""
    key, _, member = parked.partition("\n")
    if key != keys.TIMERS_KEY or not member:
        return False
    return bool(connection.zadd(keys.TIMERS_KEY, {member: due_ms}, nx=True))


def claimed_since(connection: Any, job_id: str, ttl_s: int) -> float:
    """Since when the caller has seen ``job_id`` claimed but not started: the time of the
    first call (the marker lives ``ttl_s`` seconds)."""
    now = time.time()
    key = keys.first_seen_key(job_id)
    if connection.set(key, repr(now), nx=True, ex=ttl_s):
        return now
    return float(connection.get(key) or now)


class RunRepairs(RunStore):
    """One run as the reconciler looks at it."""

    def load_plan(self, meta: Mapping[str, str], served: Plan | None = None) -> str | None:
        """Load the run's plan, storing ``served`` (a served DAG's plan of the run's version)
        again when the stored one is gone or was edited; the damage when the plan cannot be
        had, else None."""
        dag, plan_hash = meta.get("dag", ""), meta.get("plan", "")
        try:
            self._plan = load_plan(self.connection, dag, plan_hash)
            return None
        except RunError as exc:  # gone (RunNotFound), or edited
            if served is not None and served.hash == plan_hash:
                self.restore_plan(served)
                return None
            if isinstance(exc, RunNotFound):
                return f"its plan {plan_hash} of DAG {dag!r} is gone"
            return f"its plan {plan_hash} of DAG {dag!r} was edited"

    def node_fields(self) -> dict[str, str]:
        """The nodes hash, decoded (``<node>:<attribute> -> value``)."""
        return _decode(self.connection.hgetall(runkeys.nodes_key(self.run_id)))

    def restore_plan(self, plan: Plan) -> None:
        """Store ``plan`` again (a worker that serves the run's version can replace a plan that
        expired or was deleted)."""
        self.connection.set(runkeys.plan_key(plan.dag, plan.hash), plan.to_json(), ex=plan.ttl_s)
        self.pin(plan)

    def unchanged_since(self, node: str, value: str) -> float:
        """Since when ``node`` has shown ``value`` (say its item count) to the caller: the
        time of the first call that saw it; a new value restarts the clock."""
        field, now = f"{self.run_id}:{node}", time.time()
        raw = self.connection.hget(keys.progress_key(), field)
        old, _, since = (raw or b"").decode().partition("|")
        if raw is not None and old == value:
            return float(since)
        with self.connection.pipeline(transaction=False) as pipe:
            pipe.hset(keys.progress_key(), field, f"{value}|{now!r}")
            pipe.expire(keys.progress_key(), self.plan.ttl_s)
            pipe.execute()
        return now

    def forget_active(self) -> None:
        """Drop the run from the index of runs that may still be running (and the reconciler's
        progress marks of its nodes)."""
        self.connection.zrem(keys.active_runs_key(), self.run_id)
        if self._plan is not None:
            fields = [f"{self.run_id}:{n}" for n in self._plan.specs]
            self.connection.hdel(keys.progress_key(), *fields)

    def count_redrive(self, node: str) -> int:
        """Count one more re-drive of ``node`` (a job made again); return the count."""
        return int(self.connection.hincrby(runkeys.nodes_key(self.run_id), f"{node}:redriven", 1))
