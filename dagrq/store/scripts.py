"""The server-side steps: each Lua script loaded once per connection, one typed wrapper each.

The scripts' headers (``dagrq/lua/*.lua``) are their contracts; these wrappers only lay out
KEYS and ARGV from a plan's :class:`~dagrq.model.plan.NodeSpec` and parse the replies. ``_lib.lua``
(the trigger rules, the event writer, the arrival step) is prepended to every script, so each
of those exists once. Nothing here knows RQ's Python API: a fired child's job is pushed by
the script itself, with RQ's key names from :mod:`dagrq.store.keys`.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any, Literal, cast
from weakref import WeakKeyDictionary

from ..model.plan import NodeSpec
from ..model.queues import versioned_queue
from . import keys, runkeys


def _source(name: str) -> str:
    return resources.files("dagrq.store").joinpath("lua", f"{name}.lua").read_text()


_LIB = _source("_lib")
#: every script, with the shared functions of _lib.lua in front
_SOURCES = {
    name: _LIB + _source(name)
    for name in (
        "start",
        "complete",
        "cancel",
        "requeue",
        "items",
        "purge",
        "claim",
        "redrive",
        "settle_run",
        "chunk",
        "take_lease",
        "rehome",
        "admit",
        "pool_size",
        "free_slot",
        "free_run",
        "cache_put",
        "park",
        "signal",
        "emit",
    )
}

#: RQ's timestamp format (``rq.utils.utcformat``), for a fired job's ``enqueued_at``
RQ_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"


def rq_now() -> str:
    """Now in RQ's timestamp format (UTC)."""
    return datetime.now(UTC).strftime(RQ_TIME_FORMAT)


_CACHE: WeakKeyDictionary[Any, dict[str, Any]] = WeakKeyDictionary()


def _script(connection: Any, name: str) -> Any:
    scripts = _CACHE.get(connection)
    if scripts is None:
        scripts = {n: connection.register_script(src) for n, src in _SOURCES.items()}
        _CACHE[connection] = scripts
    return scripts[name]


def run_script(
    connection: Any, name: str, *, keys: Sequence[str], args: Sequence[Any], pipe: Any = None
) -> Any:
    """Run script ``name`` (``dagrq/store/lua/<name>.lua``, with ``_lib.lua``) on
    ``connection``, or queue it on ``pipe`` (a pipeline of that connection: the reply is then
    the pipeline's)."""
    script = _script(connection, name)
    return script(keys=list(keys), args=list(args), client=pipe or connection)


#: what ``start.lua`` says of an attempt: go ahead (``run``); the node is already final
#: (``done``: a redelivery); nothing fired it (``refused``); the run is pinned to another DAG
#: version (``other_version``); the run has ended (``ended``) or is gone (``gone``)
StartStatus = Literal["run", "done", "refused", "other_version", "ended", "gone"]


@dataclass(frozen=True)
class Started:
    """What ``start.lua`` answered (see :data:`StartStatus`).

    ``node_state`` is the node's state for ``done`` and ``refused``; ``plan_hash`` the run's
    version for ``other_version``; ``run_state`` the run's for ``ended``; ``attempt``,
    ``params_json`` and ``outputs`` (the data parents' outputs it fired with) for ``run``.
    """

    status: StartStatus
    attempt: int = 0
    params_json: str | None = None
    plan_hash: str | None = None
    outputs: dict[str, bytes | None] = field(default_factory=dict)
    node_state: str | None = None
    run_state: str | None = None
    #: the nodes whose cache the run ignores, comma-separated ('*': every node)
    refresh: str = ""
    #: a waiting node's record (``<node>:wait``, JSON: since, pokes), '' before its first park
    wait: str = ""
    #: when the node was last put on its queue (unix seconds), or None
    queued: float | None = None

    def refreshes(self, node: str) -> bool:
        """Whether the run ignores (and overwrites) ``node``'s cache."""
        return self.refresh == "*" or node in self.refresh.split(",")


#: a run's state as an arrival step answers it: ``gone`` (no such run) and ``stale`` (a later
#: attempt of the node had started: nothing recorded) besides the run states
ArrivalState = Literal["running", "succeeded", "failed", "canceled", "gone", "stale"]


@dataclass(frozen=True)
class Completed:
    """What ``complete.lua`` (or ``items.lua``) answered: the run's state, the children it
    fired, and the children that ended (``(child, "skipped" | "upstream_failed")``), for the
    caller to deliver in turn."""

    run_state: ArrivalState
    fired: tuple[str, ...] = ()
    ended: tuple[tuple[str, str], ...] = ()


#: this machine's name, recorded with the pid of each attempt (``dagrq status`` shows it)
HOST = socket.gethostname()


def start(connection: Any, run_id: str, spec: NodeSpec, ttl_s: int, version: str) -> Started:
    """Begin an attempt of ``spec`` in ``run_id`` if the run is pinned to DAG ``version``;
    read its params and parents' outputs."""
    parents = spec.data_parents
    reply = _script(connection, "start")(
        keys=[
            runkeys.run_key(run_id),
            runkeys.nodes_key(run_id),
            runkeys.inputs_key(run_id, spec.name),
            runkeys.events_key(run_id),
        ]
        + [runkeys.output_key(run_id, p) for p in parents],
        args=[spec.name, repr(time.time()), ttl_s, version, f"{HOST}:{os.getpid()}", *parents],
    )
    status = _text(reply[0])
    if status == "done":
        return Started("done", node_state=_text(reply[1]))
    if status == "refused":
        return Started("refused", node_state=_text(reply[1]))
    if status == "other_version":
        return Started("other_version", plan_hash=_text(reply[1]))
    if status == "gone":
        return Started("gone")
    if status != "run":
        return Started("ended", run_state=status)
    outputs = dict(zip(parents, reply[6:], strict=False))
    refresh = _text(reply[3]) if reply[3] else ""
    return Started(
        "run",
        int(reply[1]),
        _opt(reply[2]),
        outputs=outputs,
        refresh=refresh,
        wait=_text(reply[4]) if reply[4] else "",
        queued=float(reply[5]) if reply[5] else None,
    )


def requeue(
    connection: Any, run_id: str, node: str, error: str, attempt: int = 0, traceback: str = ""
) -> bool:
    """Show a node whose attempt failed, and that RQ will retry, as ``queued`` again, keeping
    the attempt's error and traceback.

    ``attempt`` (start's number; 0: whichever is current) makes a stale attempt a no-op."""
    done = _script(connection, "requeue")(
        keys=[runkeys.nodes_key(run_id), runkeys.events_key(run_id)],
        args=[node, error, repr(time.time()), attempt, traceback],
    )
    return bool(done)


@dataclass(frozen=True)
class Canceled:
    """What ``cancel.lua`` answered: the run's state and the nodes it stopped."""

    run_state: str
    queued: tuple[str, ...] = ()
    running: tuple[str, ...] = ()


def cancel(connection: Any, run_id: str) -> Canceled:
    """End a running run as ``canceled``; report which nodes were queued or running."""
    reply = _script(connection, "cancel")(
        keys=[runkeys.run_key(run_id), runkeys.nodes_key(run_id), runkeys.events_key(run_id)],
        args=[repr(time.time())],
    )
    state = _text(reply[0])
    if len(reply) < 2:
        return Canceled(state)
    n = int(reply[1])
    names = tuple(_text(x) for x in reply[2:])
    return Canceled(state, names[:n], names[n:])


def purge(connection: Any, run_id: str, queue_names: Sequence[str]) -> int:
    """Take every job of ``run_id`` out of these RQ queues (after a cancel); return how many."""
    script, prefix = _script(connection, "purge"), keys.job_id(run_id, "")
    return sum(int(script(keys=[keys.queue_key(q)], args=[prefix])) for q in queue_names)


@dataclass(frozen=True)
class Report:
    """A node's final outcome as ``complete.lua`` records it.

    ``attempt`` is the reporting attempt's number from :func:`start` (0: no check, as for a
    skip or a settlement by another process); a report from an attempt that is no longer the
    node's current one is refused. ``error`` is a failure's one-line error, or a skip's
    reason.
    """

    outcome: str
    output: bytes = b""
    error: str = ""
    traceback: str = ""
    attempt: int = 0
    #: for a branch: the children it chose (the others receive ``skipped``)
    chosen: tuple[str, ...] | None = None


def complete(
    connection: Any,
    run_id: str,
    spec: NodeSpec,
    children: Sequence[NodeSpec],
    report: Report,
    *,
    ttl_s: int,
    version: str,
) -> Completed:
    """Record ``spec``'s final outcome and deliver one arrival to each child.

    ``children`` are the specs of ``spec.children``; a child fired goes onto its queue of DAG
    version ``version`` (the run's plan hash). Returns the children this call fired
    (enqueued, exactly once over all calls) and skipped (the caller completes those as
    ``skipped`` so the skip cascades). When a later attempt than ``report.attempt`` has
    started, nothing is recorded and the answer's ``run_state`` is ``"stale"``.
    """
    keys_, args = complete_call(run_id, spec, children, report, ttl_s=ttl_s, version=version)
    return _completed(_script(connection, "complete")(keys=keys_, args=args))


def complete_call(
    run_id: str,
    spec: NodeSpec,
    children: Sequence[NodeSpec],
    report: Report,
    *,
    ttl_s: int,
    version: str,
) -> tuple[list[str], list[Any]]:
    """The KEYS and ARGV of one ``complete.lua`` call (see its header)."""
    keys_: list[str] = [
        runkeys.run_key(run_id),
        runkeys.nodes_key(run_id),
        runkeys.output_key(run_id, spec.name),
        runkeys.inputs_key(run_id, spec.name),
        runkeys.events_key(run_id),
    ]
    args: list[Any] = [
        spec.name,
        report.outcome,
        report.output,
        report.error,
        report.traceback,
        repr(time.time()),
        ttl_s,
        spec.result_ttl,
        rq_now(),
        len(children),
        "1" if spec.is_join else "0",
        report.attempt,
        "*" if report.chosen is None else ",".join(report.chosen),
    ]
    _lay_out_children(run_id, version, children, keys_, args)
    return keys_, args


def claim(
    connection: Any, queue_keys: Sequence[str]
) -> tuple[str, bytes, dict[bytes, bytes]] | float | None:
    """Move the first job id waiting on ``queue_keys`` that its limits let through into its
    queue's intermediate list (``claim.lua``, which parks the others); ``(queue key, raw job
    id, its RQ job hash)``, or when nothing can be claimed the seconds until a rate limit's
    line is due (a float), or None. The id is returned as bytes: it may be garbage that is
    not text; the hash is empty when the job is gone."""
    reply = _script(connection, "claim")(keys=list(queue_keys), args=[keys.RQ_JOB_PREFIX])
    if not reply:
        return None
    if not reply[0]:
        return int(reply[1]) / 1000
    fields = reply[2:]
    return _text(reply[0]), reply[1], dict(zip(fields[::2], fields[1::2], strict=True))


#: what ``redrive.lua`` did: put the job back (``pushed``), or found it ``waiting`` in its
#: queue, ``claimed`` by a worker, its node no longer in a wanted state (``unwanted``), or gone
Redriven = Literal["pushed", "waiting", "claimed", "unwanted", "gone"]


def redrive(
    connection: Any,
    run_id: str,
    node: str,
    job_id: str,
    queue_name: str,
    *,
    wanted: Sequence[str],
    release: bool,
) -> Redriven:
    """Put ``job_id`` back at the head of its queue if it is in no list and ``node`` is still
    in one of the ``wanted`` states (``redrive.lua``; with ``release``, take it back from its
    intermediate list too). Answers ``pushed``, ``waiting``, ``claimed``, ``unwanted`` or
    ``gone``."""
    reply = _script(connection, "redrive")(
        keys=[
            keys.queue_key(queue_name),
            keys.intermediate_key(queue_name),
            keys.RQ_JOB_PREFIX + job_id,
            keys.doorbell_key(queue_name),
            runkeys.nodes_key(run_id),
        ],
        args=[job_id, "1" if release else "0", node, ",".join(wanted)],
    )
    return cast(Redriven, _text(reply))


def rehome_calls(
    connection: Any,
    pipe: Any,
    moves: Sequence[tuple[str, str, Sequence[str], Sequence[str]]],
) -> None:
    """Queue one ``rehome.lua`` call on ``pipe`` per ``(job id, new queue, old keys, new
    keys)``: the old queue's list, intermediate list, scheduled and started registries, and
    the new queue's list, scheduled and started registries and doorbell."""
    script = _script(connection, "rehome")
    for job_id, new_queue, old, new in moves:
        script(
            keys=[keys.RQ_JOB_PREFIX + job_id, *old, *new], args=[job_id, new_queue], client=pipe
        )


def read_chunk(
    connection: Any,
    run_id: str,
    node: str,
    items_key: str,
    indices: Sequence[int],
    others: Sequence[str],
) -> tuple[
    str | None,
    str | None,
    str | None,
    int,
    str,
    list[bytes | None],
    list[bool],
    list[bytes | None],
]:
    """What one item job reads (``chunk.lua``): ``(run state, params JSON, plan hash, items
    total, the nodes whose cache the run ignores, the items at ``indices`` (consecutive, as a
    job's are), whether each has its result recorded already, the outputs of ``others``)``;
    counts the items begun (not those already recorded)."""
    reply = _script(connection, "chunk")(
        keys=[
            runkeys.run_key(run_id),
            runkeys.nodes_key(run_id),
            items_key,
            runkeys.map_results_key(run_id, node),
        ]
        + [runkeys.output_key(run_id, p) for p in others],
        args=[node, indices[0], len(indices)],
    )
    n = len(indices)
    if not reply[0]:
        return None, None, None, 0, "", [None] * n, [False] * n, [None] * len(others)
    return (
        _text(reply[0]),
        _opt(reply[1]),
        _opt(reply[2]),
        int(reply[3]),
        _text(reply[4]),
        list(reply[6 : 6 + n]),
        [c == 49 for c in reply[5]],  # b"1": recorded
        list(reply[6 + n :]),
    )


def take_lease(connection: Any, registry_key: str, member: str, cutoff: float) -> bool:
    """Remove ``member`` from a started registry if its lease expired before ``cutoff``
    (``take_lease.lua``): True for the one caller that removed it."""
    taken = _script(connection, "take_lease")(keys=[registry_key], args=[member, repr(cutoff)])
    return bool(taken)


def settle_run(connection: Any, run_id: str, damaged: str = "") -> tuple[str, int, int]:
    """Recount a running run's pending and failed nodes from their states, ending it when none
    is pending (``settle_run.lua``); with ``damaged``, end it ``failed`` for that reason.
    Returns ``(run state, pending, failed)`` (``-1`` where nothing was counted)."""
    reply = _script(connection, "settle_run")(
        keys=[runkeys.run_key(run_id), runkeys.nodes_key(run_id), runkeys.events_key(run_id)],
        args=[repr(time.time()), damaged],
    )
    if len(reply) == 1:
        return _text(reply[0]), -1, -1
    return _text(reply[0]), int(reply[1]), int(reply[2])


def complete_script(connection: Any) -> Any:
    """The registered ``complete.lua`` (for callers that pipeline it, like the benchmarks)."""
    return _script(connection, "complete")


def record_items(
    connection: Any,
    run_id: str,
    spec: NodeSpec,
    children: Sequence[NodeSpec],
    *,
    ttl_s: int,
    version: str,
    results: Sequence[tuple[int, bytes]] = (),
    errors: Sequence[tuple[int, str]] = (),
) -> Completed:
    """Record item results (and final item failures) of mapped node ``spec``; the call that
    records the last item ends the node and delivers it to ``children`` (onto their queues of
    DAG version ``version``)."""
    keys_ = [
        runkeys.run_key(run_id),
        runkeys.nodes_key(run_id),
        runkeys.map_results_key(run_id, spec.name),
        runkeys.map_errors_key(run_id, spec.name),
        runkeys.events_key(run_id),
    ]
    args: list[Any] = [
        spec.name,
        repr(time.time()),
        ttl_s,
        spec.result_ttl,
        rq_now(),
        len(children),
        len(results),
        len(errors),
    ]
    _lay_out_children(run_id, version, children, keys_, args)
    for index, blob in results:
        args += [index, blob]
    for index, error in errors:
        args += [index, error]
    return _completed(_script(connection, "items")(keys=keys_, args=args))


def _lay_out_children(
    run_id: str, version: str, children: Sequence[NodeSpec], keys_: list[str], args: list[Any]
) -> None:
    for child in children:
        queue = versioned_queue(child.queue_name, version)
        keys_ += [
            runkeys.join_key(run_id, child.name),
            runkeys.inputs_key(run_id, child.name),
            keys.job_key(run_id, child.name),
            keys.queue_key(queue),
            keys.doorbell_key(queue),
        ]
        args += [
            child.name,
            len(child.parents),
            child.rule,
            keys.job_id(run_id, child.name),
            f"{child.priority}~" if child.start_after or child.not_before else child.priority,
        ]


def _completed(reply: Any) -> Completed:
    run_state = cast(ArrivalState, _text(reply[0]))
    if run_state in ("gone", "stale"):
        return Completed(run_state)
    n_fired = int(reply[1])
    names = tuple(_text(x) for x in reply[2:])
    rest = names[n_fired:]
    return Completed(run_state, names[:n_fired], tuple(zip(rest[::2], rest[1::2], strict=True)))


def _opt(value: Any) -> str | None:
    return None if value is None else _text(value)


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
