"""A run's life: created at submit, canceled, re-pinned to another DAG version.

Each is a write that changes what a run is, over a :class:`~dagrq.store.runs.RunStore` (whose
steps an attempt takes): :func:`create` writes a run and its RQ jobs in one MULTI/EXEC;
:func:`cancel` ends it and stops its jobs; :func:`repin` and :func:`upgrade` move a run to
another version of its DAG (re-running parts of an ended run is :mod:`dagrq.store.rerun`'s).
Every step is safe to repeat after a crash half-way.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.exceptions import WatchError

from ..cluster import new_run_id
from ..errors import DAGChanged, RunError
from ..model.plan import NodeSpec, Plan
from . import flow, index, keys, objects, rqjobs, runkeys, scripts, waits
from .runs import RunStore

#: seconds a cancel waits for the nodes it stopped to stop
STOP_WAIT_S = 15.0
#: ``rehome.lua`` calls per round trip (an upgrade's job moves)
MOVE_BATCH = 1000

log = logging.getLogger(__name__)


# ------------------------------------------------------------------ create
@dataclass(frozen=True)
class Guard:
    """A condition a new run is written under, atomically with it (optimistic: ``WATCH``).

    ``watch`` keys are watched; ``allowed(connection)`` reads them (in the watch) and says
    whether the run may be written; ``write(pipe, run_id)`` adds writes to the run's own
    transaction. If a watched key changes before the run is written, nothing is."""

    watch: Sequence[str]
    allowed: Callable[[Any], bool]
    write: Callable[[Any, str], None]


def create(
    connection: Any,
    plan: Plan,
    params: Mapping[str, Any],
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    trigger: str = "",
    priority: int = 0,
    refresh: str = "",
    trace: str = "",
) -> RunStore:
    """Write one run of ``plan`` and create its RQ jobs, in one MULTI/EXEC.

    The plan is stored once per version; roots are enqueued, every other job is saved
    ``deferred`` until ``complete.lua`` fires it. ``params`` are already validated. The
    run enters the run indexes (every DAG's and its own), which keep the newest
    :data:`~dagrq.store.keys.RUN_INDEX_MAX`. ``trigger`` says how it came to be (empty:
    by hand; ``schedule <dag>:<name> @ <tick>``; ``backfill <id> @ <tick>``). ``priority``
    is added to every node's (see docs/flow-control.md); with the DAG's ``max_active_runs``
    reached the run waits ``queued``. ``refresh``: the nodes whose cache the run ignores
    (``*``: all), comma-separated. ``trace``: the submitter's W3C ``traceparent``
    (:mod:`dagrq.tracing`), or empty.
    """
    made = create_if(
        connection,
        plan,
        params,
        None,
        name=name,
        tags=tags,
        trigger=trigger,
        priority=priority,
        refresh=refresh,
        trace=trace,
    )
    assert made is not None  # without a guard a run is always written
    return made


def create_if(
    connection: Any,
    plan: Plan,
    params: Mapping[str, Any],
    guard: Guard | None,
    *,
    name: str | None = None,
    tags: Sequence[str] = (),
    trigger: str = "",
    priority: int = 0,
    refresh: str = "",
    parent: str | None = None,
    trace: str = "",
) -> RunStore | None:
    """:func:`create` under ``guard``: the run and the guard's writes, or nothing (None)
    when the guard refuses or a watched key changed. ``parent``: a child run's link to its
    sub-DAG node (:func:`dagrq.store.waits.parent_field`)."""
    write = guard.write if guard is not None else None
    new = NewRun(plan, params, name, tags, trigger, write, priority, refresh, parent, trace)

    def prepare(pipe: Any) -> list[NewRun] | None:
        return [new] if guard is None or guard.allowed(pipe) else None

    made = create_all_if(connection, guard.watch if guard is not None else (), prepare)
    return made[0] if made else None


@dataclass(frozen=True)
class NewRun:
    """One run for :func:`create_all_if`, and what to write with it (``write(pipe, id)``)."""

    plan: Plan
    params: Mapping[str, Any]
    name: str | None = None
    tags: Sequence[str] = ()
    trigger: str = ""
    write: Callable[[Any, str], None] | None = None
    priority: int = 0
    refresh: str = ""
    #: a child run's link to its parent's sub-DAG node (:func:`dagrq.store.waits.parent_field`)
    parent: str | None = None
    #: the submitter's W3C traceparent (:mod:`dagrq.tracing`), or empty
    trace: str = ""

    @property
    def admitted(self) -> bool:
        """Whether the run's roots wait for ``admit.lua`` (a DAG with ``max_active_runs``, or
        a run with a priority) rather than going on their queues with the run."""
        return (
            self.plan.max_active_runs is not None
            or self.priority != 0
            or any(s.priority != 0 for s in self.plan.specs.values() if s.starts_at_submit)
        )


def create_all_if(
    connection: Any, watch: Sequence[str], prepare: Callable[[Any], Sequence[NewRun] | None]
) -> list[RunStore] | None:
    """Write several runs in one MULTI/EXEC, under a ``WATCH`` of ``watch``: ``prepare(pipe)``
    reads the watched keys and says which runs to write (None: none, the condition failed).
    Returns their stores, or None when nothing was written (refused, or a watched key
    changed: then the caller may try again, one by one)."""
    with connection.pipeline(transaction=True) as pipe:
        if watch:
            pipe.watch(*watch)
        news = prepare(pipe)
        if not news:
            return None
        ids = [new_run_id(connection) for _ in news]
        pipe.multi()  # explicit MULTI first: RQ's enqueue_job expects it on a caller's pipeline
        plans: set[str] = set()
        for new, run_id in zip(news, ids, strict=True):
            _write_run(connection, pipe, new, run_id, store_plan=new.plan.hash not in plans)
            plans.add(new.plan.hash)
            if new.write is not None:
                new.write(pipe, run_id)
        try:
            pipe.execute()
        except WatchError:
            return None
    stores = [RunStore(connection, run_id, new.plan) for new, run_id in zip(news, ids, strict=True)]
    stores[-1]._replicated()
    return stores


def _write_run(connection: Any, pipe: Any, new: NewRun, run_id: str, *, store_plan: bool) -> None:
    # long: every write of a new run is one MULTI/EXEC, laid out here in one piece
    """On ``pipe`` (in MULTI): every write of a new run (``store_plan``: its plan too). A run
    whose roots wait for admission (:attr:`NewRun.admitted`) is written ``queued`` with its
    roots ``pending``; ``admit.lua``, last in the transaction, starts it or queues it."""
    plan, params, name, tags, trigger = new.plan, new.params, new.name, new.tags, new.trigger
    now = repr(time.time())
    ttl, specs = plan.ttl_s, plan.specs
    admitted = new.admitted
    node_fields: dict[str, Any] = {}
    timed = {} if admitted else waits.timed_roots(plan, run_id, params, float(now))
    for spec in specs.values():
        starts = spec.starts_at_submit and not admitted
        node_fields[f"{spec.name}:state"] = "queued" if starts else "pending"
        node_fields[f"{spec.name}:queue"] = spec.queue_name
        if starts:
            node_fields[f"{spec.name}:queued"] = now
    for timer_fields, member, due_ms in timed.values():  # a delayed root: a timer
        node_fields.update(timer_fields)
        pipe.zadd(keys.TIMERS_KEY, {member: due_ms})
    events = runkeys.events_key(run_id)
    if store_plan:
        pipe.set(runkeys.plan_key(plan.dag, plan.hash), plan.to_json(), ex=ttl)
    meta = {
        "dag": plan.dag,
        "state": "queued" if admitted else "running",
        "pending": len(specs),
        "failed": 0,
        "params": json.dumps(params),
        "created_at": now,
        "plan": plan.hash,
        "serializer": plan.serializer,
        "ttl_s": ttl,
        "nodes": json.dumps(list(specs)),
        "name": name or "",
        "tags": json.dumps(list(tags)),
    }
    if trigger:
        meta["trigger"] = trigger
    if new.priority:
        meta["priority"] = new.priority
    if new.refresh:
        meta["refresh"] = new.refresh
    if new.parent:
        meta["parent"] = new.parent
    if plan.emits:
        meta["emits"] = plan.emits
    if plan.hooks:
        meta["hooks"] = 1
    if new.trace:
        meta["trace"] = new.trace
    if admitted:
        roots = [s for s in specs.values() if s.starts_at_submit]
        meta["roots"] = flow.roots_field(plan, run_id, roots, new.priority)
    if plan.max_active_runs is not None:
        gate = {"k": keys.active_set_key(plan.dag), "max": plan.max_active_runs, "id": run_id}
        meta["gate"] = json.dumps(gate)
    pipe.hset(runkeys.run_key(run_id), mapping=meta)
    pipe.expire(runkeys.run_key(run_id), ttl)
    indexed = {keys.runs_index_key(): index.member(plan.dag, run_id)}
    indexed[keys.runs_index_key(plan.dag)] = run_id
    for key, entry in indexed.items():
        pipe.zadd(key, {entry: float(now)})
        pipe.zremrangebyrank(key, 0, -keys.RUN_INDEX_MAX - 1)
    pipe.zadd(keys.dags_key(), {plan.dag: float(now)})  # the web view's DAGs, newest first
    pipe.hset(runkeys.nodes_key(run_id), mapping=node_fields)
    pipe.expire(runkeys.nodes_key(run_id), ttl)
    if not admitted:
        pipe.xadd(events, {"node": "", "state": "running", "ts": now})
        for spec in specs.values():
            if spec.starts_at_submit:
                state = "waiting" if spec.name in timed else "queued"
                pipe.xadd(events, {"node": spec.name, "state": state, "ts": now})
    fire_always(pipe, run_id, specs.values(), ttl)
    pipe.expire(events, ttl)
    pipe.zadd(keys.active_runs_key(), {run_id: float(now)})
    fields = job_fields(plan, run_id, specs.values(), params, new.priority)
    rqjobs.create_node_jobs(
        connection,
        pipe,
        plan,
        run_id,
        list(specs.values()),
        fields=fields,
        held={s.name for s in specs.values() if s.starts_at_submit} if admitted else set(timed),
    )
    if admitted:
        flow.admit(connection, pipe, plan, run_id, new.priority)
        pipe.expire(events, ttl)  # its first entries are admit.lua's


def job_fields(
    plan: Plan,
    run_id: str,
    specs: Iterable[NodeSpec],
    params: Mapping[str, Any],
    priority: int,
) -> dict[str, dict[str, str]]:
    """Per node of ``specs``, the fields its RQ job hash carries for ``claim.lua``: a limited
    node's gate (:func:`dagrq.store.flow.gate_field`), a cached plain node's peek (what the
    claim reads for its cache check, :func:`peek_field`), a delayed node's start delay
    (:func:`dagrq.store.waits.delay_field`, read when it fires)."""
    out: dict[str, dict[str, str]] = {}
    for spec in specs:
        extra: dict[str, str] = {}
        if (gate := flow.gate_field(plan, run_id, spec, params, priority)) is not None:
            extra[keys.GATE_FIELD] = gate
        if spec.cache and spec.map_over is None:
            extra[keys.PEEK_FIELD] = peek_field(run_id, spec)
        if spec.start_after or spec.not_before:
            extra[keys.DELAY_FIELD] = waits.delay_field(spec, params)
        if extra:
            out[spec.name] = extra
    return out


def peek_field(run_id: str, spec: NodeSpec) -> str:
    """A cached node's peek: the keys its claim reads for the cache check (the run hash, the
    nodes hash, its fired-with set and its data parents' outputs), as ``claim.lua`` takes it."""
    outs = [[p, runkeys.output_key(run_id, p)] for p in spec.data_parents]
    return json.dumps(
        {
            "r": runkeys.run_key(run_id),
            "n": runkeys.nodes_key(run_id),
            "node": spec.name,
            "i": runkeys.inputs_key(run_id, spec.name),
            "o": outs,
        }
    )


def fire_always(pipe: Any, run_id: str, specs: Iterable[NodeSpec], ttl_s: int) -> None:
    """On ``pipe``: mark the ``always`` nodes among ``specs`` as fired with no parent (so
    ``start.lua`` reads none of their parents, whoever finished first)."""
    for spec in specs:
        if spec.parents and spec.rule == "always":
            pipe.hset(runkeys.inputs_key(run_id, spec.name), "#fired", "at submit")
            pipe.expire(runkeys.inputs_key(run_id, spec.name), ttl_s)


def cancel(store: RunStore, *, wait_s: float = STOP_WAIT_S) -> scripts.Canceled:
    """End the run as ``canceled`` (``cancel.lua``), take its queued jobs out of their
    queues (a mapped node's item and chunk jobs too), stop its running ones, and wait up to
    ``wait_s`` seconds until none of them runs any more.

    The run's child runs (sub-DAG nodes) are canceled too. Safe to repeat: what a cancel
    that died half-way left to do is recorded in the run, and a second call does it.

    Raises:
        RunNotFound: the run does not exist.
    """
    done = scripts.cancel(store.connection, store.run_id)
    if done.run_state == "gone":
        raise store.not_found()
    if done.run_state != "canceled":
        return done
    conn, run_id, plan = store.connection, store.run_id, store.plan
    rqjobs.cancel_jobs(conn, [keys.job_id(run_id, n) for n in done.queued])
    # every execution of the run's jobs: a job can run twice at once (its claimer, thought
    # dead, was only slow), and each execution is stopped, not just the one its job names
    running = rqjobs.executions(conn, plan.rq_queues, keys.job_id(run_id, ""))
    rqjobs.stop_executions(conn, running)
    started = rqjobs.still_started(conn, [keys.job_id(run_id, n) for n in done.running])
    rqjobs.stop_jobs(conn, started)  # started, its execution not registered yet
    deadline = time.monotonic() + wait_s
    while (running or started) and time.monotonic() < deadline:
        time.sleep(0.05)
        running = rqjobs.still_executing(conn, running)
        started = rqjobs.still_started(conn, started)
    if running or started:
        left = sorted({m for _, m in running} | set(started))
        log.warning("run %s canceled; %s still running after %s s", run_id, left, wait_s)
    mapped = sorted({plan.rq_queue(s.queue_name) for s in plan.specs.values() if s.map_over})
    if mapped:  # after the stop: an expansion still running enqueues more item jobs
        scripts.purge(conn, run_id, mapped)
    conn.hdel(runkeys.run_key(run_id), "canceling")
    for child in waits.all_children(conn, run_id):  # a sub-DAG's child runs end with it
        if RunStore(conn, child).exists():
            cancel(RunStore(conn, child), wait_s=wait_s)
    return done


def purge(store: RunStore) -> int:
    """Delete everything of the ended run of ``store`` now, rather than at its TTL: its keys,
    its RQ jobs and their results, its index entries and (``DAG(output_store=)``) its objects.
    Returns how many Redis keys went.

    Raises:
        RunNotFound: the run does not exist.
        RunError: the run is still running (cancel it first).
    """
    conn, run_id = store.connection, store.run_id
    plan, state = store.plan_or_none(store.meta()), store.state()
    if state is None:
        raise store.not_found()
    if state in ("queued", "running"):
        raise RunError(f"run {run_id} is still {state}: cancel it first (dagrq cancel {run_id})")
    names = list(conn.scan_iter(match=f"{runkeys.run_key(run_id)}*", count=1000))
    jobs = list(conn.scan_iter(match=f"{keys.RQ_JOB_PREFIX}{keys.job_id(run_id, '')}*"))
    names += jobs + [keys.RQ_RESULTS_PREFIX + k.decode()[len(keys.RQ_JOB_PREFIX) :] for k in jobs]
    dag = plan.dag if plan is not None else store.meta().get("dag", "")
    with conn.pipeline(transaction=False) as pipe:
        pipe.zrem(keys.runs_index_key(), index.member(dag, run_id))
        pipe.zrem(keys.runs_index_key(dag), run_id)
        pipe.zrem(keys.active_runs_key(), run_id)
        for start in range(0, len(names), 500):
            pipe.unlink(*names[start : start + 500])
        gone = sum(pipe.execute()[3:])
    objects.delete_run(plan, run_id)
    return int(gone)


def repin(store: RunStore, plan: Plan) -> None:
    """Pin the run to version ``plan`` of its DAG (``dagrq upgrade``; the caller moves
    its jobs): store the plan, set the run's version and its nodes' queues, and say so in
    its events, in one transaction.

    Raises:
        RunNotFound: the run does not exist.
    """
    run_key, now = runkeys.run_key(store.run_id), repr(time.time())
    if not store.exists():
        raise store.not_found()
    with store.connection.pipeline(transaction=True) as pipe:
        ttl = max(plan.ttl_s, store.plan.ttl_s)
        pipe.set(runkeys.plan_key(plan.dag, plan.hash), plan.to_json(), ex=ttl)
        pipe.hset(run_key, "plan", plan.hash)
        queues = {f"{n}:queue": s.queue_name for n, s in plan.specs.items()}
        pipe.hset(runkeys.nodes_key(store.run_id), mapping=queues)
        event = {"node": "", "state": "running", "ts": now, "version": plan.hash}
        pipe.xadd(runkeys.events_key(store.run_id), event)
        rqjobs.register_queues(pipe, plan.rq_queues)
        pipe.execute()
    store.pin(plan)


def upgrade(store: RunStore, new: Plan) -> int:
    """Move a run to version ``new`` of its DAG: pin it to ``new`` and, while it runs, move
    every job of it (queued, claimed, scheduled for a retry, or leased by a worker that died)
    to the matching queue of ``new``; finished nodes' outputs are kept. An ended run is only
    re-pinned, so that a resume (``dagrq retry``) runs on ``new``. Returns how many jobs were
    waiting somewhere and moved.

    Raises:
        DAGChanged: ``new`` changed the graph (nodes, edges, maps, branches), the DAG or the
            serializer (:meth:`~dagrq.model.plan.Plan.differences`), or live workers still serve
            a running run's version (stop them first: they drain on SIGTERM).
        RunNotFound: the run does not exist.
    """
    old = store.plan
    problems = old.differences(new)
    if problems:
        raise DAGChanged(
            f"run {store.run_id} cannot go on as version {new.hash} of DAG {new.dag!r}: "
            + "; ".join(problems)
            + "; finish or cancel it, and submit a new run"
        )
    if old.hash == new.hash:
        return 0
    running = store.state() == "running"
    live = {q: n for q, n in rqjobs.listeners(store.connection, old.rq_queues).items() if n}
    if running and live:
        raise DAGChanged(
            f"version {old.hash} of DAG {old.dag!r} still has live workers (on "
            f"{', '.join(sorted(live))}): they go on running run {store.run_id}; stop them "
            "first (SIGTERM drains), or let them finish the run"
        )
    repin(store, new)
    if store.state() == "queued":  # not started: its roots start on the new version's queues
        meta = store.meta()
        roots = [s for s in new.specs.values() if s.starts_at_submit]
        prio = int(meta.get("priority") or 0)
        field = flow.roots_field(new, store.run_id, roots, prio)
        store.connection.hset(runkeys.run_key(store.run_id), "roots", field)
    if not running:
        return 0
    moved = 0
    batch = list(_moves(store, old, new))
    for start in range(0, len(batch), MOVE_BATCH):
        with store.connection.pipeline(transaction=False) as pipe:
            scripts.rehome_calls(store.connection, pipe, batch[start : start + MOVE_BATCH])
            moved += sum(1 for r in pipe.execute() if r in (b"queued", b"scheduled", b"started"))
    return moved


def _moves(
    store: RunStore, old: Plan, new: Plan
) -> Iterator[tuple[str, str, tuple[str, ...], tuple[str, ...]]]:
    """Every job the run has or may have, with its old and new homes."""
    run_id = store.run_id
    for name, spec in old.specs.items():
        before, after = old.rq_queue(spec.queue_name), new.rq_queue(new.specs[name].queue_name)
        old_keys, _ = rqjobs.home_keys(before)
        _, new_keys = rqjobs.home_keys(after)
        ids = [keys.job_id(run_id, name)]
        total = store.items_total(name) if spec.map_over else 0
        ids += [keys.chunk_job_id(run_id, name, c) for c in range(spec.chunks(total))]
        ids += [keys.item_job_id(run_id, name, i) for i in range(total)]
        for job_id in ids:
            yield job_id, after, old_keys, new_keys
