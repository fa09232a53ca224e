"""Version 1 of a DAG whose version 2 (changed_v2.py) adds an option: another plan."""

from __future__ import annotations

from dagrq import DAG

dag = DAG("t_changed")


@dag.node
def a() -> int:
    return 1


@dag.node
def b(a: int) -> int:
    return a + 1
