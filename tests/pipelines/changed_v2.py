"""Version 2 of changed_v1.py: node b gets a timeout, so the plan hash differs."""

from __future__ import annotations

from dagrq import DAG

dag = DAG("t_changed")


@dag.node
def a() -> int:
    return 1


@dag.node(timeout=30)
def b(a: int) -> int:
    return a + 1
