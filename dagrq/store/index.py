"""The run index: which runs exist, newest first (``dagrq runs``, ``Run.list``).

Every submit adds its run to two sorted sets scored by submit time, every DAG's (member
``<dag>:<run id>``, see :func:`member`) and its own (member ``<run id>``), in the submit's own
transaction: O(log n), bounded to the newest :data:`~dagrq.store.keys.RUN_INDEX_MAX`. A run expires
with its TTL; its index entries go when a listing finds the run gone.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ..cluster import every_shard
from ..model.status import RUN_FILTERS, SUMMARY_FIELDS, RunSummary, parse_summary
from . import keys, runkeys

#: ids read per round trip while a listing filters by state
PAGE = 200


def list_runs(
    connection: Any, *, limit: int = 50, offset: int = 0, **where: Any
) -> list[RunSummary]:
    """:func:`list_runs_on` ``connection``; on a cluster, every shard's runs merged, newest
    first."""
    shards = every_shard(connection)
    if len(shards) == 1:
        return list_runs_on(connection, limit=limit, offset=offset, **where)
    found = [r for s in shards for r in list_runs_on(s, limit=offset + limit, **where)]
    found.sort(key=lambda r: r.created_at, reverse=True)
    return found[offset : offset + limit]


def list_runs_on(
    connection: Any,
    *,
    dag: str | None = None,
    state: str | None = None,
    tag: str | None = None,
    limit: int = 50,
    name: str | None = None,
    trigger: str | None = None,
    prefix: str | None = None,
    offset: int = 0,
) -> list[RunSummary]:
    """The newest ``limit`` runs (of ``dag``, in ``state``, with tag ``tag``, each when given),
    newest first, without their nodes, after skipping the first ``offset`` that match (a
    page). Entries of runs that have expired are dropped from the index. ``state="waiting"``:
    running runs with a node ``waiting`` (each says what for, in ``RunSummary.waiting``; one
    more round trip per page). ``name``: runs whose name contains it (any case); ``trigger``:
    runs whose trigger starts with it (``manual``, ``schedule``, ``event``, ``backfill``...);
    ``prefix``: runs whose id starts with it (checked before any run is read).

    Raises:
        ValueError: ``state`` is not a run state.
    """
    if state is not None and state not in RUN_FILTERS:
        raise ValueError(f"run state {state!r} is not one of: {', '.join(RUN_FILTERS)}")
    waiting = state == "waiting"  # a running run with a node waiting (docs/waits.md)
    state = "running" if waiting else state
    index = keys.runs_index_key(dag)
    found: list[RunSummary] = []
    start = 0
    wanted = offset + limit
    every = not (state or tag or name or trigger or prefix)  # each entry read is one found
    while len(found) < wanted:
        size = min(PAGE, wanted - len(found)) if every else PAGE
        members = [m.decode() for m in connection.zrevrange(index, start, start + size - 1)]
        if not members:
            break
        start += len(members)
        entries = [(dag, m) if dag is not None else _split(m) for m in members]
        if prefix:
            entries = [e for e in entries if e[1].startswith(prefix)]
        pipe = connection.pipeline(transaction=False)
        for _, run_id in entries:
            pipe.hmget(runkeys.run_key(run_id), SUMMARY_FIELDS)
        gone = []
        for (of, run_id), raw in zip(entries, pipe.execute(), strict=True):
            summary = parse_summary(run_id, [v.decode() if v is not None else None for v in raw])
            if summary is None:
                gone.append((of, run_id))
            elif _matches(summary, state, tag, name, trigger):
                found.append(summary)
        if waiting:
            found = _waiting_only(connection, found)
        if gone:
            start -= len(gone)
            _forget(connection, gone)
    return found[offset:wanted]


def _matches(
    run: RunSummary, state: str | None, tag: str | None, name: str | None, trigger: str | None
) -> bool:
    """Whether ``run`` passes every filter given."""
    return (
        (state is None or run.state == state)
        and (tag is None or tag in run.tags)
        and (not name or name.lower() in (run.name or "").lower())
        and (not trigger or run.trigger.startswith(trigger))
    )


def _waiting_only(connection: Any, runs: list[RunSummary]) -> list[RunSummary]:
    """``runs`` that have a node ``waiting``, each with what its first waiting node waits for."""
    pipe = connection.pipeline(transaction=False)
    for run in runs:
        pipe.hgetall(runkeys.nodes_key(run.id))
    out = []
    for run, raw in zip(runs, pipe.execute(), strict=True):
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        for key, value in fields.items():
            node, _, attr = key.rpartition(":")
            if attr == "state" and value == "waiting":
                run.waiting = f"{node}: {fields.get(f'{node}:waiting') or 'waiting'}"
                out.append(run)
                break
    return out


def member(dag: str, run_id: str) -> str:
    """The member of a run in every DAG's index.

    Examples:
        >>> member("orders", "ab12"), _split(member("a:b", "ab12"))
        ('orders:ab12', ('a:b', 'ab12'))
    """
    return f"{dag}:{run_id}"


def _split(entry: str) -> tuple[str, str]:
    dag, _, run_id = entry.rpartition(":")
    return dag, run_id


def _forget(connection: Any, runs: list[tuple[str, str]]) -> None:
    """Drop expired runs ``(dag, run id)`` from both indexes they are in."""
    pipe = connection.pipeline(transaction=False)
    for dag, run_id in runs:
        pipe.zrem(keys.runs_index_key(), member(dag, run_id))
        pipe.zrem(keys.runs_index_key(dag), run_id)
    pipe.execute()


def active_runs(connection: Any) -> list[str]:
    """Ids of the runs that may still be running, oldest first (ended ones are pruned by the
    reconciler)."""
    return [r.decode() for r in connection.zrange(keys.active_runs_key(), 0, -1)]


def running_versions(connection: Any) -> Counter[tuple[str, str]]:
    """``(DAG, version) -> runs still running``, in one round trip."""
    ids = active_runs(connection)
    with connection.pipeline(transaction=False) as pipe:
        for run_id in ids:
            pipe.hmget(runkeys.run_key(run_id), "dag", "plan", "state")
        rows = pipe.execute()
    return Counter(
        (dag.decode(), plan.decode())
        for dag, plan, state in rows
        if dag and plan and state == b"running"
    )


def head(connection: Any, dag: str | None = None) -> str | None:
    """The id of the newest run in the index (of ``dag``, or of all)."""
    top = connection.zrevrange(keys.runs_index_key(dag), 0, 0)
    return _head_of(dag, top)


def _head_of(dag: str | None, top: list[bytes]) -> str | None:
    if not top:
        return None
    return top[0].decode() if dag is not None else _split(top[0].decode())[1]


def changed(connection: Any, dag: str | None, newest: str | None, live: dict[str, str]) -> bool:
    """Whether a runs list rendered when ``newest`` was the index's :func:`head` (of ``dag``
    or of all) and showing runs ``live`` (id -> ``<state>:<nodes pending>`` as shown, those
    not ended) is out of date: a run was submitted since, or one of those moved on. One round
    trip of ``1 + len(live)`` commands: a list with nothing running costs one per look."""
    with connection.pipeline(transaction=False) as pipe:
        pipe.zrevrange(keys.runs_index_key(dag), 0, 0)
        for run_id in live:
            pipe.hmget(runkeys.run_key(run_id), "state", "pending")
        top, *states = pipe.execute()
    now = [":".join((v or b"").decode() for v in got) for got in states]
    return _head_of(dag, top) != (newest or None) or now != list(live.values())
