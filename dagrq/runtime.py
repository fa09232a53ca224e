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

from rq import Queue, Worker, get_current_job
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.timeouts import JobTimeoutException

from . import join, keys
from .dag import DAG, build_kwargs, one_line_error
from .errors import DagrqError, RunNotFound
from .plan import NodeSpec, Plan

log = logging.getLogger(__name__)

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
    """An RQ job that runs only dagrq's entry point."""

    def _execute(self) -> Any:
        if self.func_name != keys.ENTRYPOINT:
            raise NodeRefused(
                f"job {self.id} names {self.func_name!r}; a dagrq worker runs only "
                f"{keys.ENTRYPOINT}; run this job on a plain rq worker"
            )
        return super()._execute()


def execute_node(dag: str, run: str, node: str) -> dict[str, Any]:
    """The RQ entry point of every dagrq job: run one attempt of ``node`` in ``run``.

    Returns a small summary (stored by RQ as the job result); the node's output itself is
    stored once in dagrq's output key. Raises the node's exception after recording it, so
    RQ retries (``retry=``) or marks the job failed as usual.
    """
    graph = _LOADED.get(dag)
    if graph is None:
        raise NodeRefused(
            f"DAG {dag!r} is not loaded by this worker (loaded: {', '.join(_LOADED) or 'none'}); "
            f"start it with: dagrq worker <pipeline defining {dag!r}>"
        )
    job = get_current_job()
    assert job is not None, "execute_node runs inside an RQ job"
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
        plan = load_plan(conn, dag, started.plan_hash or "?")
        error = (
            f"DAG changed since this run was submitted (run's plan {started.plan_hash}, this "
            f"worker's {graph.plan_hash}); run workers with the code the run was submitted "
            "with, or submit a new run"
        )
        deliver(plan.specs, plan.ttl_s, conn, run, node, "failed", error=error)
        job.retries_left = 0  # another attempt on this worker cannot do better
        raise DAGChanged(error)

    params = json.loads(started.params_json or "{}")
    try:
        kwargs = build_kwargs(graph.nodes[node], spec, started.outputs, params, graph.codec)
        value = graph.nodes[node].fn(**kwargs)
        try:
            output = graph.codec.dumps(value)
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"output of node {node!r} cannot be stored as {graph.serializer}: {exc}; "
                "return JSON-friendly data or use DAG(..., serializer='pickle')"
            ) from exc
    except Exception as exc:
        error = one_line_error(exc)
        if isinstance(exc, JobTimeoutException):
            error = f"timed out after {spec.timeout} s"
        if job.should_retry:  # RQ runs it again: only the final outcome arrives downstream
            join.requeue(conn, run, node, error)
            raise
        trace = tb.format_exc()
        deliver(graph.specs, graph.ttl_s, conn, run, node, "failed", error=error, traceback=trace)
        raise
    deliver(graph.specs, graph.ttl_s, conn, run, node, "succeeded", output=output)
    return {"node": node, "outcome": "succeeded", "attempt": started.attempt}


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
) -> None:
    """Record ``node``'s outcome and deliver arrivals, cascading skips downstream.

    ``specs`` are the run's node specs (its plan). Each step is one atomic, idempotent
    ``complete.lua`` call; a crash between steps is repaired when the job is delivered
    again (the script re-reports skipped children).
    """
    todo: list[tuple[str, str, bytes, str, str]] = [(node, outcome, output, error, traceback)]
    while todo:
        name, result, blob, err, trace = todo.pop()
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
        )
        todo += [(child, "skipped", b"", "", "") for child in done.skipped]


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
) -> Worker:
    """An RQ ``Worker`` that runs the nodes of ``dags`` and nothing else."""
    dags = list(dags)
    serve(*dags)
    wanted = list(queue_names or [])
    queues: dict[str, Queue] = {}
    for graph in dags:
        for q in queues_for(graph, connection, wanted or None):
            queues.setdefault(q.name, q)
    return Worker(
        list(queues.values()),
        connection=connection,
        name=name,
        serializer=RQ_SERIALIZER,
        job_class=DagrqJob,
    )
