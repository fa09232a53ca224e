"""Every trigger rule, each where it fires and where it ends skipped or upstream_failed,
a node that skips itself, and the cascade of an upstream failure."""

from __future__ import annotations

from typing import Any

from dagrq import DAG, Skip, quorum

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


@dag.node
def skipper() -> str:
    raise Skip("nothing to do today")


@dag.node(trigger="all_done")
def done_any(ok1: str, bad: str | None) -> dict[str, Any]:
    return {"ok1": ok1, "bad": bad}


@dag.node  # all_success after a failure: upstream_failed, and that cascades
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
def nf(ok1: str, skipper: str | None) -> dict[str, Any]:
    return {"ok1": ok1, "skipper": skipper}


@dag.node(trigger="none_failed")
def nf_bad(ok1: str, bad: str | None) -> str:
    return "never"


@dag.node(trigger=quorum(2))
def two_of_three(ok1: str | None, ok2: str | None, bad: str | None) -> list[str | None]:
    return [ok1, ok2, bad]


@dag.node(trigger=quorum(3))
def three_of_three(ok1: str | None, ok2: str | None, bad: str | None) -> str:
    return "never"


@dag.node(trigger="none_failed_min_one_success")
def nfmos(ok1: str, skipper: str | None) -> dict[str, Any]:
    return {"ok1": ok1, "skipper": skipper}


@dag.node(trigger="none_failed_min_one_success")
def nfmos_skip(skipper: str | None) -> str:
    return "never"


@dag.node(trigger="one_done")
def one_done_ok(bad: str | None, skipper: str | None) -> str:
    return "one done"


@dag.node(trigger="one_done")
def one_done_skip(skipper: str | None) -> str:
    return "never"


@dag.node(trigger="none_skipped")
def none_skipped_ok(ok1: str | None, bad: str | None) -> str:
    return "none skipped"


@dag.node(trigger="none_skipped")
def none_skipped_skip(ok1: str | None, skipper: str | None) -> str:
    return "never"


@dag.node(trigger="all_skipped")
def all_skipped_ok(skipper: str | None) -> str:
    return "all skipped"


@dag.node(trigger="all_skipped")
def all_skipped_skip(ok1: str | None) -> str:
    return "never"


@dag.node(trigger="all_done_min_one_success")
def adm1(ok1: str | None, bad: str | None) -> str:
    return "all done, one ok"


@dag.node(trigger="all_done_min_one_success")
def adm1_uf(bad: str | None, bad2: str | None) -> str:
    return "never"


@dag.node(trigger="always")
def always_node(ok1: str | None, bad: str | None) -> list[str | None]:
    return [ok1, bad]  # started at submit: it reads no parent
