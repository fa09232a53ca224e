"""One attempt of a node on a worker, and the one policy for a failed or lost attempt.

:func:`begin` fences the attempt (``start.lua``: a redelivered job re-delivers what was
recorded, a run that ended starts nothing, a changed DAG is refused); :func:`run_node` calls
a plain node through :func:`dagrq.model.call.call` and reports its outcome;
:meth:`Attempt.failed` settles a failure by :func:`settle_failure`, the same policy the item
jobs of a map (:mod:`dagrq.jobs.fanout`) and the lost-worker path (:mod:`dagrq.jobs.lost`)
follow.
"""

from __future__ import annotations

import json
import logging
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from ..model.call import Outcome, call, from_cache, keep, node_key
from ..model.commands import running
from ..model.dag import DAG
from ..model.jobref import JobRef
from ..model.node import build_kwargs, one_line_error
from ..model.plan import NodeSpec
from ..store import rqjobs
from ..store.cache import RedisCache
from ..store.runs import RunStore

log = logging.getLogger(__name__)

#: what becomes of a failed attempt: RQ runs the same job again, each failed item of a chunk
#: gets a job of its own, or the node (item) fails for good
Settlement = Literal["retry", "retry_alone", "fail"]

#: the small summary an attempt returns (RQ stores it as the job's result)
Summary = dict[str, Any]

#: seconds an attempt's steps (start, report, a map's items) ride out a Redis outage before
#: they give up (:func:`dagrq.store.outage.ride_out`); a worker sets it to twice its lease
#: (:func:`ride_out_outages`), so an outage shorter than a lease never costs a node anything
OUTAGE_S = 120.0


def ride_out_outages(seconds: float) -> None:
    """Let this process's attempts ride out a Redis outage of up to ``seconds``."""
    global OUTAGE_S
    OUTAGE_S = float(seconds)


def store_for(job: Any, run_id: str, dag: DAG | None = None) -> RunStore:
    """The run store an attempt of ``job`` uses: its steps ride out Redis outages of up to
    :data:`OUTAGE_S`."""
    return RunStore(job.connection, run_id, dag.plan if dag else None, outage_s=OUTAGE_S)


def settle_failure(
    *, retries_left: int | None, items: int = 1, node_retries: int = 0
) -> Settlement:
    """What becomes of a failed (or lost) attempt.

    Args:
        retries_left: the RQ job's retries left (RQ's own count; None for a job without).
        items: how many items the job holds: a chunk of a mapped node with ``chunk > 1``
            holds several, a node's job or a single item's holds one.
        node_retries: the node's ``retry=`` (extra attempts), for a chunk's items.

    Returns:
        ``retry`` when RQ will run the same job again (it has retries left);
        ``retry_alone`` for a chunk of several items of a node that allows retries (each
        failed item gets a job of its own with the node's remaining retries: the chunk was
        their first attempt); ``fail`` otherwise.

    Examples:
        >>> settle_failure(retries_left=2), settle_failure(retries_left=0)
        ('retry', 'fail')
        >>> settle_failure(retries_left=None, items=100, node_retries=1)
        'retry_alone'
    """
    if items > 1:
        return "retry_alone" if node_retries > 0 else "fail"
    return "retry" if retries_left is not None and retries_left > 0 else "fail"


def attempt_error(exc: BaseException, spec: NodeSpec) -> str:
    """The one-line error of a failed attempt (a timeout says so)."""
    if isinstance(exc, rqjobs.JobTimeoutException):
        return f"timed out after {spec.timeout} s"
    return one_line_error(exc)


@dataclass
class Attempt:
    """One started attempt of a node (not a mapped node's item job).

    Attributes:
        dag: the worker's DAG (its version is the run's).
        store: the run's handle.
        spec: the node.
        job: the RQ job running it.
        number: the attempt's number from ``start.lua`` (fences late reports).
        params: the run parameters.
        outputs: the data parents' outputs the node fired with (``None`` where absent).
        refresh: the run ignores (and overwrites) the node's cache (``--refresh``).
        record: a waiting node's wait record (since, pokes, due; :mod:`dagrq.jobs.waits`).
        queued: when the node was last put on its queue (unix seconds), or None.
    """

    dag: DAG
    store: RunStore
    spec: NodeSpec
    job: Any
    number: int
    params: dict[str, Any]
    outputs: dict[str, bytes | None]
    refresh: bool = False
    record: dict[str, Any] = field(default_factory=dict)
    queued: float | None = None

    def failed(self, exc: BaseException) -> None:
        """Settle a failed attempt: shown ``queued`` when RQ retries the job, else the node
        fails with its error and traceback and its children hear of it."""
        error = attempt_error(exc, self.spec)
        trace = "".join(traceback.format_exception(exc))
        self.store.log_error(self.spec.name, self.number, error)  # the attempt's last line
        log.warning(
            "run %s: node %s attempt %d failed: %s",
            self.store.run_id,
            self.spec.name,
            self.number,
            error,
        )
        if settle_failure(retries_left=self.job.retries_left) == "retry":
            self.store.requeue(self.spec.name, error, self.number, trace)
            return
        self.store.deliver(
            self.spec.name, "failed", error=error, traceback=trace, attempt=self.number
        )


def begin(dag: DAG, job: Any, ref: JobRef) -> Attempt | Summary:
    """Start an attempt of ``ref``'s node (``start.lua``), or say why none is started.

    A job delivered again after its node's outcome was recorded re-delivers that outcome
    (finishing what a crashed worker left undone); a run that has ended starts nothing; a run
    pinned to another version of the DAG is not this worker's to run (see
    :func:`refused_version`).
    """
    store = store_for(job, ref.run, dag)
    node = ref.node
    started = store.start(dag.specs[node])
    match started.status:
        case "run":
            return Attempt(
                dag=dag,
                store=store,
                spec=dag.specs[node],
                job=job,
                number=started.attempt,
                params=json.loads(started.params_json or "{}"),
                outputs=started.outputs,
                refresh=started.refreshes(node),
                record=json.loads(started.wait) if started.wait else {},
                queued=started.queued,
            )
        case "done":
            store.deliver(node, started.node_state or "failed")
            return {"node": node, "outcome": started.node_state, "redelivered": True}
        case "refused":
            log.warning(
                "run %s: job %s for node %s refused: the node is %s, not queued (nothing fired it)",
                ref.run,
                job.id,
                node,
                started.node_state,
            )
            return {"node": node, "outcome": None, "refused": started.node_state}
        case "other_version":
            return refused_version(dag, job, ref, started.plan_hash)
        case _:
            ended = started.run_state or started.status
            log.info("run %s is %s; node %s not started", ref.run, ended, node)
            return {"node": node, "outcome": None, "run": ended}


def run_node(
    attempt: Attempt, on_again: Callable[[Attempt], Summary | None] | None = None
) -> Summary:
    """Call a plain node with its inputs (:func:`dagrq.model.call.call`) and report its
    outcome in one atomic step. A sensor's body that returns None is handed to ``on_again``
    (it parks the node: :func:`dagrq.jobs.waits.poke_again`; None: poke again now).

    A node that raises :class:`~dagrq.errors.Skip` ends ``skipped`` with its reason; a branch
    reports the children it chose. Anything else escaping the node, ``SystemExit`` and other
    ``BaseException`` s included, fails the attempt (retried by ``retry=``): a node that calls
    ``sys.exit()`` does not hang its run.

    Raises:
        BaseException: the node's own, after settling it (so RQ retries or fails the job).
        NodeStopped: its run was canceled while it ran (nothing recorded).
    """
    spec, store, codec = attempt.spec, attempt.store, attempt.dag.codec
    node = attempt.dag.nodes[spec.name]
    outputs = store.read_inputs(spec, attempt.outputs)  # Redis out of reach: not the node's fault

    def inputs() -> dict[str, Any]:
        return build_kwargs(node, spec, outputs, attempt.params, codec)

    cache, key = _cache_of(attempt, node, outputs, inputs)
    looked = getattr(attempt.job, "dagrq_missed", False)  # at its claim, just now
    if key is not None and not attempt.refresh and not looked:  # a hit: the body does not run
        hit = from_cache(node, codec, cache.get(spec.name, key))
        if hit is not None:
            fresh = store.deliver(
                spec.name, "cached", output=hit.output, error=hit.reason, attempt=attempt.number
            )
            return {
                "node": spec.name,
                "outcome": "cached" if fresh else "refused",
                "from": hit.reason,
            }
    outcome = _called(attempt, node, inputs, on_again)
    if isinstance(outcome, dict):
        return outcome  # a sensor parked until its next poke
    if outcome.state == "skipped":
        store.deliver(spec.name, "skipped", error=outcome.reason, attempt=attempt.number)
        return {"node": spec.name, "outcome": "skipped", "reason": outcome.reason}
    if outcome.error is not None:
        attempt.failed(outcome.error)
        raise outcome.error
    followed = None
    if outcome.chosen is not None:  # a branch: what it chose, and what runs because of that
        followed = attempt.dag.plan.followed(spec.name, outcome.chosen)
    fresh = store.deliver(
        spec.name, "succeeded", output=outcome.output, attempt=attempt.number, chosen=followed
    )
    if fresh and key is not None:
        keep(cache, spec, key, outcome, store.run_id)
    return {
        "node": spec.name,
        "outcome": "succeeded" if fresh else "refused: a later attempt started",
        "attempt": attempt.number,
    }


def _called(
    attempt: Attempt,
    node: Any,
    inputs: Callable[[], dict[str, Any]],
    on_again: Callable[[Attempt], Summary | None] | None,
) -> Outcome | Summary:
    """The body called with its log captured; a sensor's None handed to ``on_again`` (its
    summary when it parked; poked again at once when news came meanwhile)."""
    spec, store = attempt.spec, attempt.store
    while True:
        with (
            store.capture_logs(spec.name, attempt.number),
            running(store.run_id, spec.name, attempt.number),
        ):
            outcome = call(node, spec, attempt.dag.codec, inputs)
            if outcome.state == "again":
                log.info("sensor %s: poke returned None (not yet)", spec.name)
        if outcome.state != "again" or on_again is None:
            return outcome
        parked = on_again(attempt)
        if parked is not None:
            return parked


def kept_at_claim(dag: DAG, job: Any, ref: JobRef) -> bool:
    """Settle a claimed job of a cached plain node from its cache entry, if there is one,
    without starting an attempt: True when the node ended ``cached`` (the job is then done
    and its body never runs), False to run the job as usual (a miss, a refresh, or anything
    that is not a plain cached node of a running run of this version). What the key needs came
    with the claim (``claim.lua``'s peek); the entry is one round trip; a hit is reported with
    ``complete.lua``, as a worker would."""
    spec = dag.specs[ref.node]
    if not spec.cache or spec.map_over is not None:
        return False
    peeked = getattr(job, "dagrq_peek", None)  # read with the claim (its hash names what)
    if peeked is None:
        return False
    store = store_for(job, ref.run, dag)
    seen = store.peeked(spec, peeked)
    if seen.run_state != "running" or seen.node_state != "queued":
        return False
    if (
        seen.plan_hash != dag.plan_hash
        or seen.refresh == "*"
        or ref.node in seen.refresh.split(",")
    ):
        return False
    node, codec = dag.nodes[spec.name], dag.codec
    outputs = store.read_inputs(spec, seen.outputs)
    key = node_key(
        node,
        spec,
        dag.name,
        dag.serializer,
        outputs,
        seen.params,
        lambda: build_kwargs(node, spec, outputs, seen.params, codec),
    )
    if key is None:
        return False
    cache = RedisCache(store.connection, dag.name, dag.cache_max_entries, dag.output_store)
    hit = from_cache(node, codec, cache.get(spec.name, key))
    if hit is None:
        job.dagrq_missed = True  # the attempt does not look again (it still keeps on success)
        return False
    store.deliver(spec.name, "cached", output=hit.output, error=hit.reason)
    rqjobs.close_lost(store.connection, job, job.origin)
    return True


def _cache_of(
    attempt: Attempt, node: Any, outputs: dict[str, bytes | None], inputs: Any
) -> tuple[Any, str | None]:
    """The run's cache and the node's key in it (None, None for a node that is not cached)."""
    if not attempt.spec.cache:
        return None, None
    dag = attempt.dag
    cache = RedisCache(attempt.store.connection, dag.name, dag.cache_max_entries, dag.output_store)
    key = node_key(node, attempt.spec, dag.name, dag.serializer, outputs, attempt.params, inputs)
    return cache, key


def refused_version(dag: DAG, job: Any, ref: JobRef, version: str | None) -> Summary:
    """The answer to a job of a run pinned to another version of ``dag`` than this worker's:
    nothing runs and nothing changes (versions have queues of their own, so only a job moved
    by hand gets here; the reconciler puts it back on its own queue)."""
    log.warning(
        "run %s: job %s for node %s refused: the run is pinned to version %s of DAG %r, this "
        "worker serves version %s",
        ref.run,
        job.id,
        ref.node,
        version,
        dag.name,
        dag.plan_hash,
    )
    return {"node": ref.node, "outcome": None, "refused": f"version {version}"}
