"""The RQ names and the global Redis keys dagrq uses: job ids, RQ's queue and job keys,
doorbells, the run indexes, the reconciler's marks. A run's own keys are
:mod:`dagrq.store.runkeys`'s; these two modules are the only ones that spell ``dagrq:``.

Examples:
    >>> job_id("abc", "report")
    'dagrq-abc-report'
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
#: RQ's results stream of a job is this and the job id (``rq.results.Result.get_key``)
RQ_RESULTS_PREFIX = "rq:results:"


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


def job_id(run_id: str, node: str) -> str:
    """The deterministic RQ job id of one node in one run (RQ allows ``[A-Za-z0-9_-]``)."""
    return f"{PREFIX}-{run_id}-{node}"


def job_key(run_id: str, node: str) -> str:
    """RQ's hash for that job."""
    return RQ_JOB_PREFIX + job_id(run_id, node)


#: fields of a dagrq RQ job hash that ``claim.lua`` reads with the job: a limited node's
#: flow-control gate (:mod:`dagrq.store.flow`), a cached node's peek (``lifecycle.peek_field``)
GATE_FIELD = "dagrq_gate"
PEEK_FIELD = "dagrq_peek"
#: the field of a delayed node's job hash that ``complete.lua`` reads when it fires the node:
#: JSON ``{a: start_after ms, nb: not_before unix ms}`` (docs/waits.md)
DELAY_FIELD = "dagrq_delay"

#: the field of RQ's worker hash where a dagrq worker says which DAG versions it serves
#: (JSON ``{dag: plan hash}``)
SERVES_FIELD = "dagrq_serves"


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


def dags_key() -> str:
    """Sorted set: every DAG with a run submitted, ``name -> its newest submit``.

    Examples:
        >>> dags_key()
        'dagrq:dags'
    """
    return f"{PREFIX}:dags"


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


# ------------------------------------------------------------------ schedules
#: every schedule a leader has served: ``<dag>:<name>`` -> its description (JSON)
SCHEDULES_KEY = f"{PREFIX}:schedules"
#: every backfill, by start time
BACKFILLS_KEY = f"{PREFIX}:backfills"


def scheduler_leader_key(dag: str) -> str:
    """The lease of the scheduler that leads ``dag``'s schedules: the holder's token."""
    return f"{PREFIX}:sched:leader:{dag}"


def schedule_key(schedule: str) -> str:
    """A schedule's state (``<dag>:<name>``): last tick, its run, paused, buffered tick."""
    return f"{PREFIX}:sched:{schedule}"


def tick_key(schedule: str, tick_ms: int) -> str:
    """The claim of one tick of a schedule: the run it made, or why it made none."""
    return f"{PREFIX}:sched:{schedule}:tick:{tick_ms}"


def schedule_runs_key(schedule: str) -> str:
    """The runs of a schedule that may still run (its overlap policy reads them)."""
    return f"{PREFIX}:sched:{schedule}:active"


def backfill_key(backfill_id: str) -> str:
    """One backfill: its schedule, range, state and runs."""
    return f"{PREFIX}:backfill:{backfill_id}"


def backfill_runs_key(backfill_id: str) -> str:
    """The runs one backfill made, in order."""
    return f"{PREFIX}:backfill:{backfill_id}:runs"


# ------------------------------------------------------------------ flow control
#: every flow-control key starts so (``_lib.lua``'s FLOW spells it too)
FLOW_PREFIX = f"{PREFIX}:flow:"
#: every limit and rate window that has held or parked anything (``dagrq pools`` lists them)
FLOW_LIMITS_KEY = FLOW_PREFIX + "limits"
#: rate limits whose line may move (limit key -> when, unix ms)
FLOW_DUE_KEY = FLOW_PREFIX + "due"
#: the active sets of DAGs with max_active_runs (set key -> the limit)
FLOW_RUNSETS_KEY = FLOW_PREFIX + "runsets"


def pool_key(name: str) -> str:
    """Hash: a pool's ``size``, ``used`` and holders (``h:<job id>`` -> slots); its line of
    waiters is ``<key>:wait``.

    Examples:
        >>> pool_key("warehouse")
        'dagrq:flow:pool:warehouse'
    """
    return f"{FLOW_PREFIX}pool:{name}"


def node_limit_key(name: str) -> str:
    """Hash: a node's own concurrency limit (``<dag>.<node>`` or ``<dag>.<node>:<key>``), laid
    out as a pool's."""
    return f"{FLOW_PREFIX}node:{name}"


def rate_key(name: str) -> str:
    """Sorted set: the starts within a rate limit's window (unix ms); its line is
    ``<key>:wait``."""
    return f"{FLOW_PREFIX}rate:{name}"


def active_set_key(dag: str) -> str:
    """Set: the running runs of a DAG with ``max_active_runs``; its queued runs wait in the
    sorted set ``<key>:queue``."""
    return f"{FLOW_PREFIX}runs:{dag}"


def priority_key(queue_name: str) -> str:
    """Sorted set: the jobs of a queue with a priority other than 0 (``claim.lua`` reads it
    around the list).

    Examples:
        >>> priority_key("dagrq.orders")
        'rq:queue:dagrq.orders:prio'
    """
    return queue_key(queue_name) + ":prio"


# ------------------------------------------------------------------ cached outputs
#: the DAGs that have cached outputs
CACHE_DAGS_KEY = f"{PREFIX}:cache-dags"


def cache_index_key(dag: str) -> str:
    """Sorted set: a DAG's cache entries, ``<node>:<key>`` -> when written (oldest evicted).

    Examples:
        >>> cache_index_key("etl")
        'dagrq:cache:etl'
    """
    return f"{PREFIX}:cache:{dag}"


def cache_entry_key(dag: str, node: str, key: str) -> str:
    """Hash: one cached output, ``o`` (bytes), ``r`` (the run it came from), ``t`` (when)."""
    return f"{cache_index_key(dag)}:{node}:{key}"


# ------------------------------------------------------------------ waits and events
#: sorted set of parked nodes' due times (score: unix ms; member: the waiter, as _lib.lua's
#: unpark takes it); any worker's claim moves what is due (docs/waits.md)
TIMERS_KEY = f"{PREFIX}:timers"
#: the event stream (``dagrq emit``, ``DAG(emits=)``), bounded (``MAXLEN ~``)
EVENTS_KEY = f"{PREFIX}:events"
#: events kept in the stream, about
EVENTS_MAX = 100_000
#: how long an emitter's dedup key is remembered
EVENT_KEY_TTL_S = 7 * 24 * 3600


def event_key_key(name: str, key: str) -> str:
    """The event id emitted under dedup ``key`` for events named ``name`` (a string, kept
    :data:`EVENT_KEY_TTL_S`)."""
    return f"{PREFIX}:events:key:{name}:{key}"


def event_group(dag: str) -> str:
    """The consumer group of the event stream that reads events for DAG ``dag``."""
    return f"{PREFIX}:dag:{dag}"


def event_run_key(dag: str, event_id: str) -> str:
    """The run an event started of DAG ``dag`` (its id; written with the run, exactly once)."""
    return f"{PREFIX}:events:run:{dag}:{event_id}"


# ------------------------------------------------------------------ metrics and hooks
#: hash of the counters and histogram buckets kept by the Lua steps, fields ``<dag>|<what>``
#: (``*|<what>`` for those of no DAG; dagrq/store/metrics.py reads them); never expires:
#: counts survive restarts
METRICS_KEY = f"{PREFIX}:metrics"
#: stream per DAG of run ends and retries for the workers' alert hooks and run spans
#: (``<prefix><dag>``; dagrq/workers/hooks.py), bounded (``MAXLEN ~``)
HOOKS_PREFIX = f"{PREFIX}:hooks:"
#: hook events kept per DAG's stream, about
HOOKS_MAX = 10_000
#: the consumer group of every hook stream
HOOKS_GROUP = f"{PREFIX}:hooks"
#: exists while a worker traces (set by its hook thread, expiring): every run's end then goes
#: to its DAG's hook stream, so its run span is emitted even when the submitter did not trace
TRACING_KEY = f"{PREFIX}:tracing"
#: seconds :data:`TRACING_KEY` lives; a tracing worker renews it every third of that
TRACING_TTL_S = 120


def hooks_key(dag: str) -> str:
    """The hook stream of DAG ``dag`` (see :data:`HOOKS_PREFIX`)."""
    return HOOKS_PREFIX + dag


def hook_done_key(run_id: str, event: str) -> str:
    """Written once when a run's hook ``event`` was handled (its guard: once per event)."""
    return f"{PREFIX}:hooked:{run_id}:{event}"
