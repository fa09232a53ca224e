"""The entry point of every dagrq job, :func:`execute_node`, and the DAGs this process serves.
Nothing else: an attempt is :mod:`dagrq.jobs.attempt`'s, a map's items
:mod:`dagrq.jobs.fanout`'s.

Its wire name, ``dagrq.runtime.execute_node`` (:data:`dagrq.store.keys.ENTRYPOINT`), is stored
in every RQ job hash (jobs saved ``deferred`` at submit live up to the run's TTL): the thin
module :mod:`dagrq.runtime` keeps it resolving. A worker refuses any job naming another
callable and any DAG it has not loaded.
"""

from __future__ import annotations

import os
import socket
from typing import Any

from .. import tracing
from ..errors import NodeRefused
from ..model.commands import running
from ..model.dag import DAG
from ..model.jobref import JobRef
from ..model.waits import Waiting
from ..store import rqjobs
from . import waits
from .attempt import Attempt, Summary, begin, kept_at_claim, run_node, store_for
from .fanout import expand, run_items

_SERVED: dict[str, DAG] = {}


def serve(*dags: DAG) -> None:
    """Let this process run the nodes of ``dags`` (validated first).

    Raises:
        DAGError: a DAG is invalid.
    """
    for dag in dags:
        dag.validate()
        _SERVED[dag.name] = dag


def served(name: str) -> DAG:
    """The DAG this process serves under ``name``.

    Raises:
        NodeRefused: this process does not serve it.
    """
    dag = _SERVED.get(name)
    if dag is None:
        raise NodeRefused(
            f"DAG {name!r} is not loaded by this worker (loaded: {', '.join(_SERVED) or 'none'}); "
            f"start it with: dagrq worker <pipeline defining {name!r}>"
        )
    return dag


def kept(job: Any) -> bool:
    """Settle a claimed job from its node's cache before RQ runs it
    (:func:`~dagrq.jobs.attempt.kept_at_claim`): True when done. A job that is not a served
    dagrq node's own job, or not signed as required, is left to RQ (which refuses it)."""
    try:
        ref = rqjobs.ref_of(job)
    except ValueError:
        return False
    if not ref.own or not rqjobs.signature_ok(ref):
        return False
    try:
        dag = served(ref.dag)
    except NodeRefused:
        return False
    return ref.node in dag.specs and kept_at_claim(dag, job, ref)


def execute_node(
    dag: str,
    run: str,
    node: str,
    chunk: int | None = None,
    item: int | None = None,
    sig: str | None = None,
) -> Summary:
    """The RQ entry point of every dagrq job: run one attempt of ``node`` in ``run``.

    For a mapped node, the node's own job expands it into item jobs; ``chunk`` (a chunk of
    items) or ``item`` (one item retried on its own) names such a job; ``sig`` is the job's
    signature when jobs are signed (``$DAGRQ_SECRET``). Returns a small summary (stored by RQ
    as the job result); outputs go to dagrq's own keys.

    Raises:
        NodeRefused: the DAG is not served here, has no such node, or (with a secret set)
            the job's signature is wrong or missing.
        BaseException: the node's own, after recording it, so RQ retries (``retry=``) or
            marks the job failed as usual.
    """
    ref = JobRef(dag, run, node, chunk, item, sig)
    if not rqjobs.signature_ok(ref):
        raise NodeRefused(
            f"job for node {node!r} of run {run} is not signed with this worker's "
            f"{rqjobs.SECRET_ENV}; only a dagrq that has the key may make node jobs"
        )
    served_dag = served(dag)
    if node not in served_dag.specs:
        raise NodeRefused(
            f"DAG {dag!r} has no node {node!r} (nodes: {', '.join(served_dag.specs)}); "
            "the job was not made by this DAG's submit"
        )
    job = rqjobs.current_job()
    if not ref.own:  # a chunk of a map's items (or one item on its own)
        if tracing.enabled():
            part = f"chunk {chunk}" if chunk is not None else f"item {item}"
            trace, _ = store_for(job, run).trace_context(())
            with tracing.node_span(run, dag, node, job.retries_left or 0, trace, {}, {}, part):
                return run_items(served_dag, job, ref)
        return run_items(served_dag, job, ref)
    began = begin(served_dag, job, ref)
    if not isinstance(began, Attempt):
        return began
    with running(ref.run, node, began.number):  # log lines of the attempt name it
        if tracing.enabled():  # off: one check, nothing read
            with _span(began):
                return _attempt(began)
        return _attempt(began)


def _span(began: Attempt) -> Any:
    """The span of a traced attempt (:func:`dagrq.tracing.node_span`)."""
    spec, store = began.spec, began.store
    trace, parents = store.trace_context(spec.parents)
    where = {
        "messaging.destination.name": began.job.origin,
        "messaging.message.id": began.job.id,
        "dagrq.worker": f"{socket.gethostname()}:{os.getpid()}",
    }
    return tracing.node_span(
        store.run_id, began.dag.name, spec.name, began.number, trace, parents, where
    )


def _attempt(began: Attempt) -> Summary:
    """Run a started attempt as its node's kind says (a wait, a sub-DAG, a map, a body)."""
    spec = began.spec
    if spec.start_after or spec.not_before:  # a delayed start: parked until it is due
        parked = waits.delayed(began)
        if parked is not None:
            return parked
    kind = Waiting.parse(spec.wait).kind if spec.wait else None
    if kind == "signal":
        return waits.run_signal(began)
    if kind == "subdag":
        return waits.run_subdag(began)
    if spec.map_over is not None:
        return expand(began)
    return run_node(began, on_again=waits.poke_again if kind == "sensor" else None)
