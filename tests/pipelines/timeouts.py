"""A node that overruns its timeout."""

from __future__ import annotations

import time

from dagrq import DAG

dag = DAG("t_timeout")


@dag.node(timeout=1)
def sleepy() -> str:
    time.sleep(30)
    return "woke"


@dag.node
def after(sleepy: str) -> str:
    return sleepy
