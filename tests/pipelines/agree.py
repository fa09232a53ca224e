"""Nodes whose bodies end every way a body can: a wrong output type, Skip, a branch's choice,
SystemExit and a BaseException of its own, and a map whose items do the same. run_local and a
worker must agree on every one (tests/test_agree.py)."""

from __future__ import annotations

import sys
from typing import Literal

from dagrq import DAG, Skip

dag = DAG("t_agree")


class Oddity(BaseException):
    """Not an Exception: what a node must still fail with, not escape with."""


@dag.node
def wrong_type() -> int:
    return "5"  # type: ignore[return-value]


@dag.node
def skipped() -> int:
    raise Skip("nothing new today")


@dag.node
def exits() -> int:
    sys.exit(3)


@dag.node
def odd() -> int:
    raise Oddity("a BaseException of its own")


@dag.branch
def pick() -> Literal["left", "right"]:
    return "right"


@dag.node
def left(pick: str) -> str:
    return f"left after {pick}"


@dag.node
def right(pick: str) -> str:
    return f"right after {pick}"


@dag.node
def numbers() -> list[int]:
    return [1, 2, 3, 4]


@dag.map("numbers")
def check(numbers: int) -> int:
    if numbers == 3:
        raise Skip("three is skipped")
    return numbers * 10


@dag.map("numbers")
def typed(numbers: int) -> int:
    return "two" if numbers == 2 else numbers  # type: ignore[return-value]


@dag.node(trigger="all_done")
def after(
    wrong_type: int | None,
    skipped: int | None,
    exits: int | None,
    odd: int | None,
    left: str | None,
    right: str | None,
    check: list[int | None] | None,
    typed: list[int | None] | None,
) -> dict[str, object]:
    return {"right": right, "left": left, "check": check, "typed": typed}
