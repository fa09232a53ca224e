"""What an RQ worker executes for a node, and the worker that executes only that.

Every dagrq RQ job names one callable, :func:`execute_node`, with JSON arguments
``(dag, run, node)``. It runs the node's function with its parents' outputs, then reports
the outcome through one atomic ``complete.lua`` call that also delivers the arrivals to the
children (firing joins exactly once). A worker refuses any job naming another callable and
any DAG it has not loaded.
"""

from __future__ import annotations

import json
import logging
import traceback as tb
from collections.abc import Iterable, Mapping
from typing import Any

from rq import Queue, get_current_job
from rq import Retry as RQRetry
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException
from rq.worker import BaseWorker

from . import join, keys
from .dag import DAG, build_kwargs, join_items, one_line_error
from .errors import DagrqError, RunNotFound
from .options import Retry
from .plan import NodeSpec, Plan

log = logging.getLogger(__name__)

#: default seconds without a heartbeat after which a running node's worker is presumed lost
DEFAULT_LEASE_S = 60

#: RQ's serializer for dagrq job payloads: JSON, so no worker unpickles what it reads
RQ_SERIALIZER = JSONSerializer

_LOADED: dict[str, DAG] = {}


class DAGChanged(DagrqError):
    """The worker's DAG is not the version the run was submitted with."""

    exit_code = 1


class NodeRefused(DagrqError):
    """A job this worker must not run: another callable, or a DAG it has not loaded."""

    exit_code = 1


def serve(*dags: DAG) -> None:
    """Let this process run the nodes of ``dags`` (validated first)."""
    for dag in dags:
        dag.validate()
        _LOADED[dag.name] = dag


class DagrqJob(Job):
    """An RQ job that runs only dagrq's entry point, and only dagrq's failure callback."""

    @property
    def failure_callback(self) -> Any:
        """dagrq's :func:`~dagrq.lease.on_failure`; any other name in Redis is ignored."""
        if self._failure_callback_name not in (None, keys.ON_FAILURE):
            log.warning(
                "job %s names failure callback %r: ignored", self.id, self._failure_callback_name
            )
            return None
        return super().failure_callback

    @property
    def success_callback(self) -> Any:
        """None: dagrq jobs have no success callback (one named in Redis is ignored)."""
        return None

    @property
    def stopped_callback(self) -> Any:
        """None: dagrq jobs have no stopped callback (one named in Redis is ignored)."""
        return None

    def _execute(self) -> Any:
        if self.func_name != keys.ENTRYPOINT:
            raise NodeRefused(
                f"job {self.id} names {self.func_name!r}; a dagrq worker runs only "
                f"{keys.ENTRYPOINT}; run this job on a plain rq worker"
            )
        return super()._execute()


def execute_node(
    dag: str, run: str, node: str, chunk: int | None = None, item: int | None = None
) -> dict[str, Any]:
    """The RQ entry point of every dagrq job: run one attempt of ``node`` in ``run``.

    For a mapped node, the node's own job expands it into item jobs; ``chunk`` (a chunk of
    items) or ``item`` (one item retried on its own) names such a job. Returns a small summary
    (stored by RQ as the job result); outputs go to dagrq's own keys. Raises the node's
    exception after recording it, so RQ retries (``retry=``) or marks the job failed as usual.
    """
    graph = _LOADED.get(dag)
    if graph is None:
        raise NodeRefused(
            f"DAG {dag!r} is not loaded by this worker (loaded: {', '.join(_LOADED) or 'none'}); "
            f"start it with: dagrq worker <pipeline defining {dag!r}>"
        )
    job = get_current_job()
    assert job is not None, "execute_node runs inside an RQ job"
    if chunk is not None or item is not None:
        from .mapping import run_items

        return run_items(graph, job, run, graph.specs[node], chunk, item)
    conn = job.connection
    spec = graph.specs[node]
    started = join.start(conn, run, spec, graph.ttl_s)
    if started.status == "done":  # redelivered after its outcome was recorded: re-deliver
        deliver(graph.specs, graph.ttl_s, conn, run, node, started.node_state or "failed")
        return {"node": node, "outcome": started.node_state, "redelivered": True}
    if started.status != "run":
        log.info("run %s is %s; node %s not started", run, started.status, node)
        return {"node": node, "outcome": None, "run": started.status}
    if started.plan_hash != graph.plan_hash:
        refuse_changed(graph, job, run, node, started.plan_hash)

    params = json.loads(started.params_json or "{}")
    try:
        outputs = read_inputs(graph, conn, run, spec, started.outputs)
        if spec.map_over is not None:
            from .mapping import expand

            return expand(graph, job, run, spec, outputs, params)
        kwargs = build_kwargs(graph.nodes[node], spec, outputs, params, graph.codec)
        value = graph.nodes[node].fn(**kwargs)
        output = serialize_output(graph, node, value)
    except Exception as exc:
        error = attempt_error(exc, spec)
        if job.should_retry:  # RQ runs it again: only the final outcome arrives downstream
            join.requeue(conn, run, node, error, started.attempt)
            raise
        trace = tb.format_exc()
        deliver(
            graph.specs,
            graph.ttl_s,
            conn,
            run,
            node,
            "failed",
            error=error,
            traceback=trace,
            attempt=started.attempt,
        )
        raise
    fresh = deliver(
        graph.specs,
        graph.ttl_s,
        conn,
        run,
        node,
        "succeeded",
        output=output,
        attempt=started.attempt,
    )
    outcome = "succeeded" if fresh else "refused: a later attempt started"
    return {"node": node, "outcome": outcome, "attempt": started.attempt}


def refuse_changed(graph: DAG, job: Job, run: str, node: str, plan_hash: str | None) -> None:
    """Fail ``node`` because this worker's DAG is not the run's version; always raises."""
    plan = load_plan(job.connection, graph.name, plan_hash or "?")
    error = (
        f"DAG changed since this run was submitted (run's plan {plan_hash}, this "
        f"worker's {graph.plan_hash}); run workers with the code the run was submitted "
        "with, or submit a new run"
    )
    deliver(plan.specs, plan.ttl_s, job.connection, run, node, "failed", error=error)
    job.retries_left = 0  # another attempt on this worker cannot do better
    raise DAGChanged(error)


def serialize_output(graph: DAG, node: str, value: Any) -> bytes:
    """``value`` as stored bytes; a clear ``TypeError`` when the serializer cannot."""
    try:
        return graph.codec.dumps(value)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"output of node {node!r} cannot be stored as {graph.serializer}: {exc}; "
            "return JSON-friendly data or use DAG(..., serializer='pickle')"
        ) from exc


def attempt_error(exc: BaseException, spec: NodeSpec) -> str:
    """The one-line error of a failed attempt (a timeout says so)."""
    if isinstance(exc, JobTimeoutException):
        return f"timed out after {spec.timeout} s"
    return one_line_error(exc)


def read_inputs(
    graph: DAG, connection: Any, run: str, spec: NodeSpec, outputs: dict[str, bytes | None]
) -> dict[str, bytes | None]:
    """``outputs`` with each mapped data parent's results joined into one list (``None``
    where an item failed; ``None`` for a map that never ran)."""
    mapped = [
        p for p in spec.data_parents if graph.specs[p].map_over is not None and p != spec.map_over
    ]
    if not mapped:
        return outputs
    return {**outputs, **{p: read_mapped(graph.codec, connection, run, p) for p in mapped}}


def read_mapped(codec: Any, connection: Any, run: str, node: str) -> bytes | None:
    """A mapped node's results as one serialized list, in item order."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.hget(keys.nodes_key(run), f"{node}:items_total")
        pipe.hgetall(keys.map_results_key(run, node))
        total, results = pipe.execute()
    if total is None:
        return None
    return join_items(codec, [results.get(str(i).encode()) for i in range(int(total))])


def deliver(
    specs: Mapping[str, NodeSpec],
    ttl_s: int,
    connection: Any,
    run_id: str,
    node: str,
    outcome: str,
    *,
    output: bytes = b"",
    error: str = "",
    traceback: str = "",
    attempt: int = 0,
) -> bool:
    """Record ``node``'s outcome and deliver arrivals, cascading skips downstream.

    ``specs`` are the run's node specs (its plan). Each step is one atomic, idempotent
    ``complete.lua`` call; a crash between steps is repaired when the job is delivered
    again (the script re-reports skipped children). ``attempt`` (start's number) makes a
    stale attempt's report a no-op: returns False when it was refused, else True.
    """
    todo: list[tuple[str, str, bytes, str, str, int]] = [
        (node, outcome, output, error, traceback, attempt)
    ]
    while todo:
        name, result, blob, err, trace, number = todo.pop()
        spec = specs[name]
        done = join.complete(
            connection,
            run_id,
            spec,
            [specs[c] for c in spec.children],
            result,
            ttl_s=ttl_s,
            output=blob,
            error=err,
            traceback=trace,
            attempt=number,
        )
        if done.run_state == "stale":
            log.warning(
                "run %s: node %s attempt %s reported after a later attempt started; refused",
                run_id,
                name,
                number,
            )
            return False
        todo += [(child, "skipped", b"", "", "", 0) for child in done.skipped]
    return True


_PLANS: dict[str, Plan] = {}


def load_plan(connection: Any, dag: str, plan_hash: str) -> Plan:
    """The stored plan of a DAG version (cached per process).

    Raises
    ------
    RunNotFound
        when the plan has expired or was never stored.
    """
    plan = _PLANS.get(plan_hash)
    if plan is None:
        raw = connection.get(keys.plan_key(dag, plan_hash))
        if raw is None:
            raise RunNotFound(
                f"the plan {plan_hash} of DAG {dag!r} is not in this Redis (expired?); "
                "submit a new run"
            )
        plan = _PLANS[plan_hash] = Plan.from_json(raw)
    return plan


def rq_retry(retry: Retry | None) -> RQRetry | None:
    """RQ's ``Retry`` for a node's ``retry=`` (None for no retries)."""
    if retry is None or retry.max <= 0:
        return None
    return RQRetry(max=retry.max, interval=list(retry.backoff))


def queues_for(graph: DAG, connection: Any, names: Iterable[str] | None = None) -> list[Queue]:
    """RQ queues (JSON payloads, :class:`DagrqJob`) for ``names``, default all of the DAG's."""
    chosen = list(names) if names else graph.queues
    return [
        Queue(name, connection=connection, serializer=RQ_SERIALIZER, job_class=DagrqJob)
        for name in chosen
    ]


def make_worker(
    dags: Iterable[DAG],
    connection: Any,
    queue_names: Iterable[str] | None = None,
    name: str | None = None,
    *,
    fork: bool = True,
    lease_s: int = DEFAULT_LEASE_S,
) -> BaseWorker:
    """An RQ worker that runs the nodes of ``dags`` and nothing else.

    ``fork=True`` is RQ's ``Worker`` (a fresh work-horse process per job: isolation, a hard
    kill on timeout); ``fork=False`` is RQ's ``SimpleWorker`` (jobs run in the worker
    process: several times faster per job, but a crashing or leaking node affects the
    worker). ``lease_s``: a node whose worker sends no heartbeat for this long is presumed
    lost, and retried or failed by its rule (see :mod:`dagrq.lease`).
    """
    from .lease import LeasedSimpleWorker, LeasedWorker

    dags = list(dags)
    serve(*dags)
    wanted = list(queue_names or [])
    queues: dict[str, Queue] = {}
    for graph in dags:
        for q in queues_for(graph, connection, wanted or None):
            queues.setdefault(q.name, q)
    worker_class = LeasedWorker if fork else LeasedSimpleWorker
    return worker_class(
        list(queues.values()),
        connection=connection,
        name=name,
        serializer=RQ_SERIALIZER,
        job_class=DagrqJob,
        lease_s=lease_s,
    )
