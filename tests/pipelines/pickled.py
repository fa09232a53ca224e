"""A DAG that opted in to pickle: its output, a set, is something JSON cannot carry."""

from __future__ import annotations

from dagrq import DAG

dag = DAG("t_pickled", serializer="pickle")


@dag.node
def letters(word: str) -> set[str]:
    return set(word)
