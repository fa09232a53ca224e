"""Every trigger rule, each where it fires and where it is skipped, plus a skip cascade."""

from __future__ import annotations

from typing import Any

from dagrq import DAG, quorum

dag = DAG("t_rules")


@dag.node
def ok1() -> str:
    return "ok1"


@dag.node
def ok2() -> str:
    return "ok2"


@dag.node
def bad() -> str:
    raise RuntimeError("bad fails")


@dag.node
def bad2() -> str:
    raise RuntimeError("bad2 fails")


@dag.node(trigger="all_done")
def done_any(ok1: str, bad: str | None) -> dict[str, Any]:
    return {"ok1": ok1, "bad": bad}


@dag.node  # all_success: skipped, and the skip cascades
def needs_all(ok1: str, bad: str) -> str:
    return "never"


@dag.node
def after_skip(needs_all: str) -> str:
    return "never"


@dag.node
def deep_skip(after_skip: str) -> str:
    return "never"


@dag.node(trigger="all_done")
def cleanup(needs_all: str | None) -> dict[str, Any]:
    return {"needs_all": needs_all}


@dag.node(trigger="one_success")
def first_ok(ok1: str, bad: str | None) -> dict[str, Any]:
    return {"ok1": ok1, "bad": bad}


@dag.node(trigger="one_success")
def none_ok(bad: str | None, bad2: str | None) -> str:
    return "never"


@dag.node(trigger="one_failed")
def alarm(ok1: str | None, bad: str | None) -> str:
    return f"alarm after {ok1}"


@dag.node(trigger="one_failed")
def no_alarm(ok1: str, ok2: str) -> str:
    return "never"


@dag.node(trigger="all_failed")
def all_bad(bad: str | None, bad2: str | None) -> list[Any]:
    return [bad, bad2]


@dag.node(trigger="all_failed")
def all_bad_skip(ok1: str | None, bad: str | None) -> str:
    return "never"


@dag.node(trigger="none_failed")
def nf(ok1: str, needs_all: str | None) -> dict[str, Any]:
    return {"ok1": ok1, "needs_all": needs_all}


@dag.node(trigger="none_failed")
def nf_bad(ok1: str, bad: str | None) -> str:
    return "never"


@dag.node(trigger=quorum(2))
def two_of_three(ok1: str | None, ok2: str | None, bad: str | None) -> list[str | None]:
    return [ok1, ok2, bad]


@dag.node(trigger=quorum(3))
def three_of_three(ok1: str | None, ok2: str | None, bad: str | None) -> str:
    return "never"
