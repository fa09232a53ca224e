"""Version 3 of versions_v1.py: the graph changed (a node added), so a run of version 1
cannot go on as version 3."""

from __future__ import annotations

from dagrq import DAG

dag = DAG("t_versions")


@dag.node
def first(seconds: float = 0.0) -> str:
    return "v3"


@dag.node
def second(first: str) -> str:
    return f"{first}+v3"


@dag.node
def third(second: str) -> str:
    return second
