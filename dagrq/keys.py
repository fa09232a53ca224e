"""Every Redis key and RQ name dagrq uses. The only module that spells ``dagrq:``.

All of a run's keys share the hash tag ``{run_id}`` so that they live in one cluster slot.

Examples:
    >>> run_key("abc")
    'dagrq:run:{abc}'
    >>> join_key("abc", "report")
    'dagrq:run:{abc}:join:report'
    >>> job_id("abc", "report")
    'dagrq-abc-report'
    >>> default_queue_name("orders"), join_queue_name("orders", "report")
    ('dagrq.orders', 'dagrq.orders.report')
"""

from __future__ import annotations

PREFIX = "dagrq"

#: the RQ entry point every dagrq job names; a dagrq worker runs nothing else
ENTRYPOINT = "dagrq.runtime.execute_node"
#: RQ failure callback of every dagrq job (settles jobs whose worker was lost)
ON_FAILURE = "dagrq.lease.on_failure"

#: RQ's own key prefixes (rq.job.Job.redis_job_namespace_prefix, rq.queue.Queue)
RQ_JOB_PREFIX = "rq:job:"
RQ_QUEUE_PREFIX = "rq:queue:"
RQ_QUEUES_SET = "rq:queues"


def run_key(run_id: str) -> str:
    """Hash: the run's meta (dag, state, pending count, params, timings)."""
    return f"{PREFIX}:run:{{{run_id}}}"


def nodes_key(run_id: str) -> str:
    """Hash: per-node fields ``<node>:state``, ``<node>:attempts``, ``<node>:error`` ..."""
    return f"{run_key(run_id)}:nodes"


def output_key(run_id: str, node: str) -> str:
    """String: one node's serialized output, written once, read by every child."""
    return f"{run_key(run_id)}:out:{node}"


def join_key(run_id: str, node: str) -> str:
    """Hash: the received-set context of one join node in one run."""
    return f"{run_key(run_id)}:join:{node}"


def inputs_key(run_id: str, node: str) -> str:
    """Hash: the received-set a join fired with (its context, renamed at the fire): which
    parents the node reads. Deleted when the node ends."""
    return f"{run_key(run_id)}:inputs:{node}"


def logs_key(run_id: str, node: str) -> str:
    """Stream: what one node's attempts printed and logged (bounded; the run's TTL)."""
    return f"{run_key(run_id)}:logs:{node}"


def events_key(run_id: str) -> str:
    """Stream: the run's state changes, one entry each (bounded; the run's TTL)."""
    return f"{run_key(run_id)}:events"


def items_key(run_id: str, node: str) -> str:
    """Hash: the items a mapped node runs over, ``index -> serialized item`` (when its source
    is an ordinary node; a map over a mapped node reads that node's results)."""
    return f"{run_key(run_id)}:items:{node}"


def map_results_key(run_id: str, node: str) -> str:
    """Hash: a mapped node's results, ``index -> serialized result``, one structure per run."""
    return f"{run_key(run_id)}:map:{node}"


def map_errors_key(run_id: str, node: str) -> str:
    """Hash: a mapped node's failed items, ``index -> one-line error``."""
    return f"{run_key(run_id)}:maperr:{node}"


def chunk_job_id(run_id: str, node: str, chunk: int) -> str:
    """The RQ job id of one chunk of a mapped node.

    Examples:
        >>> chunk_job_id("abc", "parse", 7)
        'dagrq-abc-parse-c7'
    """
    return f"{job_id(run_id, node)}-c{chunk}"


def item_job_id(run_id: str, node: str, index: int) -> str:
    """The RQ job id of one item retried on its own (it failed inside a chunk)."""
    return f"{job_id(run_id, node)}-i{index}"


def plan_key(dag: str, plan_hash: str) -> str:
    """String: a DAG version's validated plan (JSON), shared by all its runs.

    Examples:
        >>> plan_key("orders", "ab12")
        'dagrq:plan:orders:ab12'
    """
    return f"{PREFIX}:plan:{dag}:{plan_hash}"


def job_id(run_id: str, node: str) -> str:
    """The deterministic RQ job id of one node in one run (RQ allows ``[A-Za-z0-9_-]``)."""
    return f"{PREFIX}-{run_id}-{node}"


def job_key(run_id: str, node: str) -> str:
    """RQ's hash for that job."""
    return RQ_JOB_PREFIX + job_id(run_id, node)


def default_queue_name(dag: str) -> str:
    """The RQ queue of a DAG's ordinary (non-join) nodes."""
    return f"{PREFIX}.{dag}"


def join_queue_name(dag: str, node: str) -> str:
    """The aggregator queue of one join node."""
    return f"{PREFIX}.{dag}.{node}"


#: the field of RQ's worker hash where a dagrq worker says which DAG versions it serves
#: (JSON ``{dag: plan hash}``)
SERVES_FIELD = "dagrq_serves"


def versioned_queue(queue_name: str, version: str) -> str:
    """The RQ queue where nodes of queue ``queue_name`` wait in runs pinned to DAG version
    ``version`` (a plan hash). A worker listens only on its own version's queues, so a rolling
    upgrade never hands a run to code of another version.

    Examples:
        >>> versioned_queue("dagrq.orders", "3f9a1c2b4d5e6f70")
        'dagrq.orders@3f9a1c2b4d5e6f70'
        >>> split_versioned("dagrq.orders@3f9a1c2b4d5e6f70"), split_versioned("other")
        (('dagrq.orders', '3f9a1c2b4d5e6f70'), ('other', None))
    """
    return f"{queue_name}@{version}"


def split_versioned(rq_queue: str) -> tuple[str, str | None]:
    """``(queue name, version)`` of an RQ queue name; the version is None for a queue that
    is not a versioned dagrq queue."""
    base, sep, version = rq_queue.rpartition("@")
    return (base, version) if sep and base else (rq_queue, None)


def queue_key(queue_name: str) -> str:
    """RQ's list key for a queue name."""
    return RQ_QUEUE_PREFIX + queue_name


def intermediate_key(queue_name: str) -> str:
    """RQ's intermediate list of a queue: job ids claimed by a worker, not yet started.

    Examples:
        >>> intermediate_key("dagrq.orders")
        'rq:queue:dagrq.orders:intermediate'
    """
    return queue_key(queue_name) + ":intermediate"


def doorbell_key(queue_name: str) -> str:
    """List: a token per job pushed onto a queue by dagrq; idle dagrq workers block on the
    doorbells of their queues (a blocking pop cannot claim from several lists atomically).

    Examples:
        >>> doorbell_key("dagrq.orders")
        'dagrq:wake:dagrq.orders'
    """
    return f"{PREFIX}:wake:{queue_name}"


def active_runs_key() -> str:
    """Sorted set: runs that may still be running (id -> created at), pruned by the
    reconciler once they have ended or expired."""
    return f"{PREFIX}:runs:active"


#: runs kept in each run index (the newest); older entries are dropped at submit
RUN_INDEX_MAX = 100_000


def runs_index_key(dag: str | None = None) -> str:
    """Sorted set: submitted runs, ``id -> created at``, of every DAG or of ``dag``; bounded
    to the newest :data:`RUN_INDEX_MAX`, and entries of expired runs are dropped when read.

    Examples:
        >>> runs_index_key(), runs_index_key("orders")
        ('dagrq:runs', 'dagrq:runs:dag:orders')
    """
    return f"{PREFIX}:runs" if dag is None else f"{PREFIX}:runs:dag:{dag}"


def rejected_key() -> str:
    """List: garbage a worker found on a dagrq queue (an id that is not text, a job hash that
    cannot be read), with why; bounded."""
    return f"{PREFIX}:rejected"


def reconcile_lock_key() -> str:
    """String: held by the one process reconciling now (expires by itself)."""
    return f"{PREFIX}:reconcile:lock"


def first_seen_key(job_id: str) -> str:
    """String: when the reconciler first saw ``job_id`` claimed but not started."""
    return f"{PREFIX}:claimed:{job_id}"


def progress_key() -> str:
    """Hash: ``<run>:<node>`` -> the last item count the reconciler saw and since when (a
    mapped node whose count stands still is looked at closely)."""
    return f"{PREFIX}:reconcile:progress"
