"""run_local and a worker call a node body the same way (one function, ``model.call.call``):
they agree on an output of the wrong type, Skip, a branch's choice, SystemExit and another
BaseException, for plain nodes and for a map's items, state for state and error for error."""

from __future__ import annotations

import pytest
import redis

from dagrq import RunFailed, loader

from .helpers import Workers, failure_of, pipeline

#: node -> (state, error or skip reason, or None) both executors must end with
EXPECTED = {
    "wrong_type": ("failed", "OutputTypeError: node 'wrong_type' returned str, not int"),
    "skipped": ("skipped", None),
    "exits": ("failed", "SystemExit: 3"),
    "odd": ("failed", "Oddity: a BaseException of its own"),
    "pick": ("succeeded", None),
    "left": ("skipped", None),
    "right": ("succeeded", None),
    "numbers": ("succeeded", None),
    "check": ("succeeded", None),
    "typed": ("failed", "1 of 4 items failed; first: item 1: OutputTypeError: node 'typed'"),
    "after": ("succeeded", None),
}


@pytest.fixture(scope="module")
def local() -> RunFailed:
    dag = loader.load(pipeline("agree"))
    with pytest.raises(RunFailed) as failed:
        dag.run_local()
    return failed.value


def test_run_local_ends_every_node_as_expected(local: RunFailed) -> None:
    states = local.states  # type: ignore[attr-defined]
    assert {n: states[n] for n in EXPECTED} == {n: s for n, (s, _) in EXPECTED.items()}
    for node, (_, error) in EXPECTED.items():
        if error is not None:
            assert local.failed[node].startswith(error), (node, local.failed[node])


def test_a_worker_agrees_with_run_local_on_every_node(
    conn: redis.Redis, workers: Workers, local: RunFailed
) -> None:
    dag = loader.load(pipeline("agree"))
    run = dag.submit(conn)
    workers.start(pipeline("agree"), 1)
    failure = failure_of(run)
    status = run.status()
    assert {n: s.state for n, s in status.nodes.items()} == local.states  # type: ignore[attr-defined]
    assert failure.failed == local.failed  # the same error text, node for node
    assert status.nodes["skipped"].reason == "nothing new today"
    assert run.results() == local.results  # type: ignore[attr-defined]
    assert local.results["after"] == run.result("after")  # type: ignore[attr-defined]
    assert run.result("after") == {
        "right": "right after right",
        "left": None,
        "check": [10, 20, None, 40],
        "typed": [1, None, 3, 4],  # a failed map gives all_done its items, None where failed
    }
