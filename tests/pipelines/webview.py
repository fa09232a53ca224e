"""The web view's browser tests (tests/test_web.py): a map, a join, a node that fails when
the run says so until the test fixes it (`test:web:fixed:<run>`), and a node that prints
what the test asks it to (`test:web:say:<run>`) until told to stop (`test:web:stop:<run>`)."""

from __future__ import annotations

import time

from rq import get_current_job

from dagrq import DAG

dag = DAG("t_web")


def _key(what: str) -> tuple[object, str]:
    job = get_current_job()
    assert job is not None
    return job.connection, f"test:web:{what}:{job.kwargs['run']}"


@dag.node
def start(n: int = 3) -> list[int]:
    return list(range(n))


@dag.map("start")
def square(start: int) -> int:
    return start * start


@dag.node
def check(start: list[int], fail: bool = False) -> int:
    connection, key = _key("fixed")
    if fail and not connection.exists(key):  # type: ignore[attr-defined]
        raise ValueError("the check failed: the run was submitted with fail=True")
    return len(start)


@dag.node
def talk(start: list[int], chatty: bool = False) -> str:
    connection, say = _key("say")
    stop = say.replace(":say:", ":stop:")
    deadline = time.monotonic() + 60
    while chatty and not connection.exists(stop) and time.monotonic() < deadline:  # type: ignore[attr-defined]
        line = connection.getdel(say)  # type: ignore[attr-defined]
        if line:
            print(line.decode(), flush=True)
        time.sleep(0.05)
    return "talked"


@dag.node
def report(square: list[int], check: int, talk: str) -> str:
    print(f"report: {sum(square)} from {check} items, {talk}")
    return f"{sum(square)}/{check}"
