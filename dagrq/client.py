"""Submitting runs and looking at them: :func:`submit` and the :class:`Run` handle.

A run is a token (``run.id``) and a handful of keys that share it (see ``dagrq/keys.py``):
the run hash, the node-state hash, one output string per finished node and one received-set
context per waiting join. ``Run`` is a thin handle: every read and write goes through the
run's :class:`~dagrq.store.runs.RunStore`, and what a status means (``explain``) is decided by the
pure functions of :mod:`dagrq.model.status`.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Iterator, Sequence
from typing import Any

from . import tracing
from .cluster import any_shard, for_run, home_shard
from .errors import (
    NoResult,
    OutputMissing,
    ParameterError,
    RunError,
    RunFailed,
    RunNotFound,
    RunTimeout,
    SignalRefused,
)
from .model.codec import get_codec, parse_type_expr
from .model.dag import DAG
from .model.node import one_line_error, optional_items, output_annotation
from .model.params import type_name
from .model.plan import Plan
from .model.status import (
    LIVE_RUN_STATES,
    SUCCESS_STATES,
    Explanation,
    RunStatus,
    RunSummary,
    explain,
)
from .store import flow, lifecycle, rerun
from .store.index import list_runs
from .store.nodelogs import LogEntry
from .store.runs import RunStore


def submit(
    dag: DAG,
    connection: Any,
    params: dict[str, Any],
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    priority: int = 0,
    refresh: str = "",
) -> Run:
    """Validate ``dag`` and ``params``, then write and enqueue one run in one transaction.

    Nothing is written when validation fails. The DAG's plan is stored once per version;
    every RQ job of the run is created here: roots on their queues, the others ``deferred``
    until ``complete.lua`` fires them. ``name`` and ``tags`` label the run in ``dagrq runs``
    and ``dagrq status``.

    Raises:
        DAGError: the DAG is invalid (before any write).
        ParameterError: a run parameter is missing or ill-typed, or ``priority`` is out of
            range (before any write).
    """
    dag.validate()
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 1000:
        raise ParameterError(
            f"priority must be a whole number from -1000 to 1000, not {priority!r}"
        )
    stored = dag.validate_params(params)
    # on a cluster, runs spread over the shards; those under shared limits stay on the
    # first, where every limit is counted (docs/scale.md)
    connection = home_shard(connection) if dag.plan.flow_controlled else any_shard(connection)
    with tracing.submitting(dag.name) as traced:
        store = lifecycle.create(
            connection,
            dag.plan,
            stored,
            name=name,
            tags=list(tags),
            priority=priority,
            refresh=refresh,
            trace=traced.get("trace", ""),
        )
    return Run(store.run_id, connection, dag=dag)


class Run:
    """A handle on one run; cheap to create, reads Redis on each call.

    Args:
        run_id: the run token.
        connection: the ``redis.Redis`` it reads.
        dag: the :class:`~dagrq.model.dag.DAG` when known: results are then decoded into the
            nodes' return annotations. Without it, a node whose return type is made of
            standard types (``int``, ``datetime``, ``set[str]``, ``dict[str, Decimal]``...)
            decodes into that type, which the plan recorded; any other (a pydantic model, a
            dataclass) into plain JSON types: pass ``dag=`` for those.
        allow_pickle: read a pickled run's outputs without its DAG. Pickle runs code from
            the bytes it reads, so outputs are unpickled only when ``dag`` (a DAG declared
            with ``serializer="pickle"``) or this flag says so, never because Redis says so.
    """

    def __init__(
        self, run_id: str, connection: Any, dag: DAG | None = None, *, allow_pickle: bool = False
    ) -> None:
        self.id = run_id
        self.connection = connection = for_run(connection, run_id)
        self.dag = dag
        self.allow_pickle = allow_pickle or (dag is not None and dag.serializer == "pickle")
        self._store = RunStore(connection, run_id, dag.plan if dag is not None else None)

    def __repr__(self) -> str:
        return f"<dagrq.Run {self.id}>"

    @classmethod
    def fetch(
        cls, run_id: str, connection: Any, dag: DAG | None = None, *, allow_pickle: bool = False
    ) -> Run:
        """Re-attach to a run from any process (see the class for ``dag`` and
        ``allow_pickle``).

        Raises:
            RunNotFound: no such run in this Redis (wrong id, other db, or expired).
        """
        run = cls(run_id, connection, dag=dag, allow_pickle=allow_pickle)
        if not run._store.exists():
            run._store.meta()  # raises RunNotFound with the fix
        return run

    @staticmethod
    def list(
        connection: Any,
        dag: str | None = None,
        state: str | None = None,
        limit: int = 50,
        tag: str | None = None,
        *,
        name: str | None = None,
        trigger: str | None = None,
        prefix: str | None = None,
        offset: int = 0,
    ) -> list[RunSummary]:
        """The newest ``limit`` runs in this Redis, newest first: of DAG ``dag`` (its name),
        in run state ``state``, with tag ``tag``, whose name contains ``name``, whose trigger
        starts with ``trigger`` (``manual``, ``schedule``...) and whose id starts with
        ``prefix``, each when given; ``offset`` matching runs skipped first (a page). Each is
        a :class:`~dagrq.model.status.RunSummary` (id, dag, state, name, tags, params, times,
        nodes done of total); ``Run.fetch`` one for its nodes.

        Raises:
            ValueError: ``state`` is not a run state.
        """
        return list_runs(
            connection,
            dag=dag,
            state=state,
            tag=tag,
            limit=limit,
            name=name,
            trigger=trigger,
            prefix=prefix,
            offset=offset,
        )

    # ---------------------------------------------------------------- reading
    def status(self) -> RunStatus:
        """The run's state and every node's state, attempts, timings and error.

        Raises:
            RunNotFound: the run does not exist.
        """
        return self._store.status()

    def explain(self, node: str) -> Explanation:
        """Why ``node`` is in its state: its rule, its parents' outcomes, what it waits for.

        A ``waiting`` node's reason names the limit; for a pool or a concurrency limit the
        attempts holding its slots are named too (``held by <run>/<node>, ...``).

        Raises:
            NoResult: the run's plan has no such node.
        """
        why = explain(self.status(), node)
        if why.state == "waiting" and why.waiting:
            held = flow.held_by(self.connection, why.waiting)
            if held:
                why = why.model_copy(update={"waiting": f"{why.waiting}, held by {held}"})
        return why

    def events(
        self, *, follow: bool = True, block_ms: int = 1000, after: str = "0-0"
    ) -> Iterator[dict[str, Any]]:
        """The run's state changes, oldest first, as dicts (``id``, ``node``, ``state``,
        ``ts``, and ``error`` or ``attempt`` where they apply); ``node`` is ``""`` for the run
        itself. With ``follow``, blocks for new entries (``XREAD BLOCK``) and stops after the
        run's own final entry; without, stops at the end of what is stored. ``after`` (an
        event's ``id``) starts after that event, as a reconnecting reader does.
        """
        return self._store.events(follow=follow, block_ms=block_ms, after=after)

    def logs(
        self, node: str | None = None, *, attempt: int | None = None, follow: bool = False
    ) -> Iterator[LogEntry]:
        """What ``node`` (default: every node) printed and logged, oldest first, each line a
        :class:`~dagrq.store.nodelogs.LogEntry` (node, attempt, item, stream, line, level,
        time); ``attempt`` keeps one attempt's. With ``follow``, goes on with new lines as
        they come until the run has ended.

        Raises:
            NoResult: the run has no node ``node``.
            RunNotFound: the run (or its plan) is gone.
        """
        specs = self._store.plan.specs
        if node is not None and node not in specs:
            raise NoResult(f"run {self.id} has no node {node!r} (nodes: {', '.join(specs)})")
        nodes = [node] if node is not None else list(specs)
        return self._store.logs(nodes, attempt=attempt, follow=follow)

    def plan(self) -> Plan:
        """The plan (graph and options) this run is pinned to, read from Redis.

        Raises:
            RunNotFound: the run or its plan is gone.
        """
        return self._store.plan

    def wait(self, timeout: float | None = None, *, poll_s: float = 0.2) -> RunStatus:
        """Block until the run ends; return its final status.

        Raises:
            RunTimeout: after ``timeout`` seconds with the run still going (the run is not
                touched).
            RunFailed: the run ended ``failed`` or ``canceled``; ``.failed`` names the nodes.
            RunNotFound: the run does not exist.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            state = self._store.state()
            if state is None:
                raise RunNotFound(f"run {self.id!r} not found in this Redis")
            if state not in LIVE_RUN_STATES:
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise RunTimeout(
                    f"run {self.id} still running after {timeout} s; wait longer or check "
                    f"`dagrq status {self.id}`"
                )
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            time.sleep(delay if left is None else min(delay, left))
            delay = min(poll_s, delay * 2)
        final = self.status()
        if final.state != "succeeded":
            raise RunFailed(self.id, final.failed() or {"run": final.state})
        return final

    def result(self, node: str) -> Any:
        """One node's output, decoded (typed by its return annotation when the DAG is known).

        Raises:
            NoResult: the node has no stored output: not finished, failed, skipped, or expired.
        """
        self._store.meta()  # RunNotFound first, for a run that is gone
        blob = self._store.output(node)
        if blob is None:
            shown = self._store.node_state(node) or "unknown to this run"
            raise NoResult(
                f"node {node!r} of run {self.id} has no result (state: {shown}); "
                "see `dagrq status` for why"
            )
        return self._decode(node, blob)

    def stored(self, node: str) -> bytes | None:
        """``node``'s output as Redis keeps it: the serialized value, or (over its DAG's
        ``offload_over``) a reference to an object (:mod:`dagrq.model.objects`); None when it
        has none."""
        return self._store.output(node)

    def results(self) -> dict[str, Any]:
        """``{node: output}`` for every node that succeeded, in topological order."""
        status = self.status()
        return {
            name: self._decode(name, blob)
            for name, node in status.nodes.items()
            if node.state in SUCCESS_STATES and (blob := self._store.output(name)) is not None
        }

    def _decode(self, node: str, blob: bytes) -> Any:
        annotation = None
        if self.dag is not None:
            fn = self.dag.nodes.get(node)
            annotation = output_annotation(fn) if fn is not None else None
        else:  # the type the plan recorded, when standard types spell it
            spec = self._store.plan.specs.get(node)
            if spec is not None and spec.returns is not None:
                with contextlib.suppress(ValueError):
                    annotation = parse_type_expr(spec.returns)
                    if spec.map_over is not None:  # a skipped or failed item reads None
                        annotation = optional_items(annotation)
        serializer = self.dag.serializer if self.dag is not None else self._store.plan.serializer
        if serializer == "pickle" and not self.allow_pickle:
            raise RunError(
                f"run {self.id} stores pickled outputs; unpickling runs code from the bytes, so "
                "pass dag= (its DAG, declared with serializer='pickle') or allow_pickle=True "
                "if you trust this Redis"
            )
        try:
            return get_codec(serializer).loads(blob, annotation)
        except OutputMissing:
            raise  # its object is gone: the error names the run, the node and the URL
        except Exception as exc:  # a value no node stored: damaged, say so in one line
            raise RunError(
                f"the stored output of node {node!r} in run {self.id} cannot be read as "
                f"{serializer}{'' if annotation is None else ' ' + type_name(annotation)} "
                f"({one_line_error(exc)[:200]}): no node stored it, it was changed by hand or "
                "by another program; submit a new run for a result you can trust"
            ) from None

    # ---------------------------------------------------------------- actions
    def signal(self, node: str, value: Any, *, wait_s: float = 10.0) -> str:
        """Send ``value`` (JSON data) to the wait node ``node`` (``dag.wait``) and wait up to
        ``wait_s`` seconds for a worker's answer: the node's type checks it, the first value
        it accepts ends the node (exactly one wins), a refused one leaves it waiting.

        Returns:
            ``accepted``; or ``kept`` when the node is not waiting yet (the value is checked
            when it starts waiting); or ``sent`` when no worker answered within ``wait_s``
            (it is checked when a worker serving the DAG runs the node).

        Raises:
            SignalRefused: a value the type refuses (the pydantic message), a node that ended
                or is no wait node, a run that ended.
            RunNotFound: the run does not exist.
        """
        from .model.waits import Waiting
        from .store import waits as stored

        plan = self.plan()
        spec = plan.specs.get(node)
        where = f"run {self.id}"
        if spec is None or not spec.wait or Waiting.parse(spec.wait).kind != "signal":
            what = "has no node" if spec is None else "has no wait node"
            waits = [n for n, s in plan.specs.items() if s.wait and '"signal"' in s.wait]
            raise SignalRefused(
                f"{where} {what} {node!r}; wait nodes: {', '.join(waits) or 'none'}"
            )
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise SignalRefused(f"signal to {node!r}: the value is not JSON ({exc})") from None
        done, state, signal_id = stored.send(self._store.connection, self.id, node, value)
        if done == "gone":
            raise self._store.not_found()
        if done == "ended":
            raise SignalRefused(f"{where}: node {node!r} already ended ({state}); signal refused")
        if done == "run":
            raise SignalRefused(f"{where} is {state}; a signal needs a live run")
        if done == "kept" and state == "pending":
            return "kept"
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            answer = stored.reply_to(self._store.connection, self.id, signal_id) or ""
            if answer == "accepted":
                return "accepted"
            if answer.startswith("refused: "):
                raise SignalRefused(answer.removeprefix("refused: "))
            time.sleep(0.05)
        return "sent"

    def cancel(self) -> RunStatus:
        """Cancel the run: queued jobs leave their queues (item and chunk jobs of mapped nodes
        too), running ones are stopped (RQ's stop-job command), pending ones never start; the
        run ends ``canceled``. A run that has already ended is left as it is.

        Returns:
            the status after the cancel.

        Raises:
            RunNotFound: the run does not exist.
        """
        lifecycle.cancel(self._store)
        return self.status()

    def purge(self) -> int:
        """Delete the ended run now rather than at its TTL: its keys, its RQ jobs and
        results, its index entries and its objects in the DAG's ``output_store``. Returns how
        many Redis keys went.

        Raises:
            RunNotFound: the run does not exist.
            RunError: the run is still running (cancel it first).
        """
        return lifecycle.purge(self._store)

    def resume(self) -> RunStatus:
        """Resume an ended run: re-run its failed, skipped and canceled nodes and everything
        downstream of them, reusing the stored outputs of the nodes that succeeded.

        The join contexts of the re-run nodes are rebuilt by delivering their finished
        parents again through the same atomic arrival step as a first run. Those parents are
        recorded in the run in the same transaction that resets the nodes, so if this
        process dies before delivering them all, calling ``resume()`` again finishes it.

        Returns:
            the status after the reset (``running`` when anything is to run again).

        Raises:
            RunError: the run is still running (wait for it or cancel it first).
        """
        rerun.resume(self._store)
        return self.status()

    def clear(self, node: str) -> RunStatus:
        """Run ``node`` of this ended run again, and everything downstream of it, whatever
        their outcome (Airflow's "clear" with downstream); the other nodes keep theirs and
        their outputs. ``dagrq clear RUN NODE``.

        Returns:
            the status read right after the reset: ``running``, unless a free worker has
            already run what was cleared to its end.

        Raises:
            RunError: the run is still running or has no such node.
        """
        rerun.clear(self._store, node)
        return self.status()

    def mark(self, node: str, outcome: str, reason: str, output: Any = None) -> RunStatus:
        """Set ``node``'s outcome in this ended run by hand: ``"succeeded"`` (its output
        ``output``, None unless given) or ``"skipped"``; ``reason`` is kept as the node's
        reason and in the run's events. Everything downstream of it runs again with that
        outcome. ``dagrq mark RUN NODE succeeded|skipped --reason TEXT``.

        Returns:
            the status after the change (``running`` while downstream nodes run again).

        Raises:
            ValueError: another outcome, no reason, or an ``output`` the node's recorded
                return type does not read (a node returning ``int`` needs an int).
            RunError: the run is still running or has no such node.
        """
        rerun.mark(self._store, node, outcome, reason, output)
        return self.status()

    def retry(self) -> RunStatus:
        """The same as :meth:`resume` (``dagrq retry``); kept for callers of the first API."""
        return self.resume()

    def upgrade(self, dag: DAG) -> RunStatus:
        """Move this run to ``dag``'s version of its DAG (an explicit opt-in; see
        :func:`dagrq.store.lifecycle.upgrade`): the run's waiting jobs go to that version's
        queues and its workers run the rest; outputs of finished nodes are kept. An ended run
        is re-pinned, so :meth:`resume` then runs on ``dag``'s version. Node bodies of the new
        version must accept what the old version's finished nodes returned.

        Returns:
            the status after the move.

        Raises:
            DAGChanged: ``dag`` changed the graph, or the run's own version still has live
                workers (they go on running it).
            RunNotFound: the run does not exist.
        """
        dag.validate()
        lifecycle.upgrade(self._store, dag.plan)
        return self.status()


def emit(connection: Any, name: str, data: Any = None, key: str | None = None) -> str:
    """Emit event ``name`` with ``data`` (JSON): every DAG subscribed to it
    (``DAG(triggers=[dagrq.on_event(name, ...)])``) starts one run. With a dedup ``key``,
    the same key within 7 days emits nothing more. Returns the event's id (the first one's for
    a key already seen). On a Redis Cluster the event goes to the first shard, whichever
    shard ``connection`` serves, so a key is seen once across the cluster.

    Raises:
        DAGError: a name that cannot name an event.
        ParameterError: data that is not JSON.
    """
    from .model.events import check_name
    from .store import waits as stored

    check_name(name)
    try:
        json.dumps(data)
    except (TypeError, ValueError) as exc:
        raise ParameterError(f"event {name!r}: data is not JSON ({exc})") from None
    event_id, _ = stored.emit(connection, name, data, key)
    return event_id
