"""Helpers shared by the tests: a fake run written as submit would leave it, one polling loop,
Redis command counting, and the counters test pipelines keep."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import redis

from dagrq.model.plan import NodeSpec
from dagrq.store import runkeys, scripts

#: the DAG version (plan hash) fake runs are pinned to
VERSION = "v-test"


def spec(name: str, parents: tuple[str, ...] = (), **fields: Any) -> NodeSpec:
    """A NodeSpec on queue ``q.test`` whose parents all pass data; a join when it has two or
    more; anything else by keyword."""
    defaults: dict[str, Any] = {
        "data_parents": parents,
        "queue_name": "q.test",
        "is_join": len(parents) > 1,
        "result_ttl": 600,
    }
    return NodeSpec(name=name, parents=parents, **{**defaults, **fields})


def fake_run(conn: redis.Redis, states: Mapping[str, str], **nodes_fields: Any) -> str:
    """Write a running run whose nodes are in ``states`` (the run hash counts them all as
    pending), plus any other node-hash fields; return its id."""
    run_id = uuid.uuid4().hex
    conn.hset(
        runkeys.run_key(run_id),
        mapping={"state": "running", "pending": len(states), "failed": 0, "plan": VERSION},
    )
    fields = {f"{node}:state": state for node, state in states.items()}
    conn.hset(runkeys.nodes_key(run_id), mapping={**fields, **nodes_fields})
    return run_id


def fake_join(
    conn: redis.Redis, width: int, rule: str = "all_success"
) -> tuple[str, list[NodeSpec], NodeSpec]:
    """A run with parents p0..p<width-1> running and one join node ``j`` waiting for them."""
    parents = tuple(f"p{i}" for i in range(width))
    run_id = fake_run(conn, {**dict.fromkeys(parents, "running"), "j": "pending"})
    return run_id, [spec(p, children=("j",)) for p in parents], spec("j", parents, rule=rule)


def arrive(
    conn: redis.Redis,
    run_id: str,
    parent: NodeSpec,
    child: NodeSpec,
    outcome: str,
    attempt: int = 0,
) -> scripts.Completed:
    """One arrival of ``parent`` at ``child`` (``complete.lua``), as a worker reports it."""
    report = scripts.Report(outcome, output=b"1", attempt=attempt)
    return scripts.complete(conn, run_id, parent, [child], report, ttl_s=600, version=VERSION)


def commands(conn: redis.Redis) -> int:
    """Redis commands run so far (INFO commandstats; scripts' inner calls included), not
    counting the INFO and CONFIG calls of the counting itself."""
    stats = conn.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config"))


def arrival_cost(conn: redis.Redis, width: int, which: str) -> int:
    """Redis commands of one arrival at a ``width``-way join: the ``last`` (firing) one or a
    ``waiting`` one."""
    run_id, parents, child = fake_join(conn, width)
    arrive(conn, run_id, parents[0], child, "succeeded")  # also loads the script
    if which == "last":
        for p in parents[1:-1]:
            arrive(conn, run_id, p, child, "succeeded")
    parent = parents[-1] if which == "last" else parents[1]
    conn.hset(runkeys.nodes_key(run_id), f"{parent.name}:attempts", 1)  # as start.lua leaves it
    before = commands(conn)
    done = arrive(conn, run_id, parent, child, "succeeded", attempt=1)  # as a worker reports
    assert done.fired == (("j",) if which == "last" else ())
    return commands(conn) - before


def wait_for(predicate: Callable[[], Any], timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll ``predicate`` until it returns something truthy; return that.

    Raises AssertionError naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached in {timeout} s"
        time.sleep(0.05)


def failure_of(run: Any, timeout: float = 60.0) -> Any:
    """Wait for ``run`` and return the RunFailed it must end with (AssertionError if it
    succeeds instead)."""
    from dagrq import RunFailed

    try:
        run.wait(timeout=timeout)
    except RunFailed as failure:
        return failure
    raise AssertionError(f"run {run.id} succeeded; the test expected it to fail")


def counter(conn: redis.Redis, name: str, run_id: str) -> int:
    """The count a test pipeline keeps under ``test:<name>:<run>`` (see pipelines/_counting)."""
    return int(conn.get(f"test:{name}:{run_id}") or 0)
