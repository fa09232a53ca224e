"""A one_success join that fires on `fast` and starts only after `slow` has also finished:
it must still see `slow` as None (it fired without it)."""

from __future__ import annotations

import time
from typing import Any

from dagrq import DAG

dag = DAG("t_early")


@dag.node
def fast() -> str:
    return "fast"


@dag.node
def slow() -> str:
    time.sleep(0.5)
    return "slow"


@dag.node(trigger="one_success", queue="t_early.late")
def first(fast: str | None, slow: str | None) -> dict[str, Any]:
    return {"fast": fast, "slow": slow}
