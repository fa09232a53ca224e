"""A branch picks one of two paths by size; the join after it (Airflow's recommended rule
after a branch, none_failed_min_one_success) runs with the path taken and None for the other.
A node on the taken path may skip itself with a reason."""

from __future__ import annotations

from typing import Literal

from dagrq import DAG, Skip

dag = DAG("t_branching")


@dag.node
def measure(n: int) -> int:
    return n


@dag.branch
def route(measure: int) -> Literal["big", "small"]:
    return "big" if measure >= 100 else "small"


@dag.node(after=["route"])
def big(measure: int) -> str:
    return f"big path for {measure}"


@dag.node(after=["route"])
def small(measure: int) -> str:
    if measure == 0:
        raise Skip("nothing to process")
    return f"small path for {measure}"


@dag.node(trigger="none_failed_min_one_success")
def report(big: str | None, small: str | None) -> str:
    return f"report: {big or small}"


airflow = DAG("t_branch_airflow")


@airflow.branch
def pick() -> Literal["chosen"]:
    return "chosen"


@airflow.node(after=["pick"])
def chosen() -> int:
    return 1


@airflow.node(after=["pick"])
def other() -> int:
    return 2


@airflow.node(after=["pick"], trigger="all_done")
def tolerant() -> int:
    """Not chosen: skipped although all_done would accept a skipped parent."""
    return 3


@airflow.node(after=["pick", "chosen"])
def empty_branch_join() -> int:
    """A child of the branch and of the chosen child: the "empty branch" join, which runs."""
    return 4
