"""Version 2 of versions_v1.py: the same graph, new code (a fix: negative seconds no longer
fail) and a timeout on `second` (another plan hash, so another version)."""

from __future__ import annotations

import time

from dagrq import DAG

dag = DAG("t_versions")
CODE = "v2"


@dag.node
def first(seconds: float = 0.0) -> str:
    time.sleep(max(0.0, seconds))
    return CODE


@dag.node(timeout=60)
def second(first: str) -> str:
    return f"{first}+{CODE}"
