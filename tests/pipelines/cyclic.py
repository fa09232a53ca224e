"""extract -> transform -> load -> extract: refused by validation."""

from __future__ import annotations

from dagrq import DAG

dag = DAG("t_cyclic")


@dag.node
def extract(load: int) -> int:
    return load


@dag.node
def transform(extract: int) -> int:
    return extract


@dag.node
def load(transform: int) -> int:
    return transform
