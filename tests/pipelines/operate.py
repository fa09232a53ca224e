"""A pipeline to operate from the terminal: typed outputs, logs from every kind of output,
a node that fails its first attempt, and one that returns the wrong type."""

from __future__ import annotations

import datetime
import logging
import os
import sys
from pathlib import Path

from dagrq import DAG

dag = DAG("operate")
log = logging.getLogger("operate.nodes")


@dag.node
def when(day: str) -> datetime.date:
    print(f"parsing {day}")
    return datetime.date.fromisoformat(day)


@dag.node(retry=1)
def tags(when: datetime.date, marker: str = "") -> set[str]:
    print("hello from tags")
    print("to stderr", file=sys.stderr)
    log.info("an info record")
    logging.debug("a debug record, below the default level")
    flag = Path(marker) if marker else None
    if flag is not None and not flag.exists():
        flag.write_text("tried")
        raise RuntimeError(f"first attempt fails (pid {os.getpid()})")
    return {"a", when.isoformat()}


@dag.node
def total(tags: set[str]) -> int:
    return len(tags)


wrong = DAG("wrongtype")


@wrong.node
def count() -> int:
    return "three"  # type: ignore[return-value]


typo = DAG("typo")
declared = DAG("declared", params=["totlas"])
clash = DAG("clash")


def totals() -> int:
    return 1


def report(totlas: int) -> int:
    return totlas


def uses(connection: str) -> str:
    return connection


for _dag in (typo, declared):
    _dag.node(totals)
    _dag.node(report)
clash.node(uses)
