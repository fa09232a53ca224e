"""Version 1 of a DAG for rolling upgrades: each node says which version's code ran it."""

from __future__ import annotations

import time

from dagrq import DAG

dag = DAG("t_versions")
CODE = "v1"


@dag.node
def first(seconds: float = 0.0) -> str:
    time.sleep(seconds)
    return CODE


@dag.node
def second(first: str) -> str:
    return f"{first}+{CODE}"
