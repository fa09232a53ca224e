"""expensive -> gate -> final, expensive -> other: `gate` fails until a flag is set."""

from __future__ import annotations

from _counting import count as _count
from rq import get_current_job

from dagrq import DAG

dag = DAG("t_resume")


@dag.node
def expensive() -> int:
    _count("expensive")
    return 10


@dag.node
def gate(expensive: int) -> int:
    _count("gate")
    job = get_current_job()
    assert job is not None
    if not job.connection.exists(f"test:open:{job.kwargs['run']}"):
        raise PermissionError("gate closed")
    return expensive + 1


@dag.node
def final(gate: int, expensive: int) -> int:
    _count("final")
    return gate * expensive


@dag.node
def other(expensive: int) -> int:
    _count("other")
    return -expensive
