"""a -> boom -> after_boom, a -> fine: boom raises, so after_boom is skipped and the run fails."""

from __future__ import annotations

from dagrq import DAG

dag = DAG("t_failing")


@dag.node
def a() -> int:
    return 1


@dag.node
def boom(a: int) -> int:
    raise ValueError(f"bad input {a}")


@dag.node
def after_boom(boom: int) -> int:
    return boom


@dag.node
def fine(a: int) -> int:
    return a + 1
