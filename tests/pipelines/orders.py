"""The README's orders DAG, with a pydantic output, a date parameter and an order-only edge:
the model tests and the pictures tests read it."""

from __future__ import annotations

from datetime import date

from pydantic import BaseModel

from dagrq import DAG

dag = DAG("orders")


class Total(BaseModel):
    count: int
    day: date


@dag.node
def report(totals: Total, fraud: list[str]) -> str:
    return f"{totals.count} orders on {totals.day}, {len(fraud)} flagged"


@dag.node
def fetch(day: date, limit: int = 3) -> list[dict[str, int]]:
    return [{"id": i} for i in range(limit)]


@dag.node
def totals(fetch: list[dict[str, int]], day: date) -> Total:
    return Total(count=len(fetch), day=day)


@dag.node(retry=3, timeout=30)
def fraud(fetch: list[dict[str, int]]) -> list[str]:
    return [str(o["id"]) for o in fetch if o["id"] % 2]


@dag.node(after=["report"])
def notify() -> str:
    return "sent"
