"""The issue's example: extract fails -> transform -> load; load's children alert
(one_failed), publish (none_failed) and rollback (all_failed). Airflow runs alert and
rollback and marks publish upstream_failed; so must dagrq."""

from __future__ import annotations

from dagrq import DAG

dag = DAG("t_airflow_chain")


@dag.node
def extract() -> list[int]:
    raise ConnectionError("the source is down")


@dag.node
def transform(extract: list[int]) -> list[int]:
    return [x * 2 for x in extract]


@dag.node
def load(transform: list[int]) -> int:
    return len(transform)


@dag.node(trigger="one_failed")
def alert(load: int | None) -> str:
    return f"paging: load gave {load}"


@dag.node(trigger="none_failed")
def publish(load: int | None) -> str:
    return "published"


@dag.node(trigger="all_failed")
def rollback(load: int | None) -> str:
    return "rolled back"
