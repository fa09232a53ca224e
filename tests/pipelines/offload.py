"""Big outputs kept in an object store: ``DAGRQ_TEST_STORE`` is the store's URL (the test sets
it for itself and its workers alike, so both build the same plan), ``DAGRQ_TEST_MB`` the size
of ``big``'s output. A parent -> join with a big output, and a map whose items and item
results are each over the threshold."""

from __future__ import annotations

import os

from _counting import count as _count

from dagrq import DAG

dag = DAG(
    "t_offload",
    output_store=os.environ.get("DAGRQ_TEST_STORE", "file:///tmp/dagrq-test-objects"),
    offload_over="1MB",
    cache=False,
)


@dag.node
def big() -> str:
    return "x" * int(float(os.environ.get("DAGRQ_TEST_MB", "2")) * 10**6)


@dag.node
def small() -> int:
    return 7


@dag.node
def joined(big: str, small: int) -> dict[str, int]:
    _count("joined")
    return {"length": len(big), "small": small}


@dag.node
def chunks() -> list[str]:
    return [str(i) * 1_200_000 for i in range(3)]  # each item over 1 MB


@dag.map("chunks")
def doubled(chunks: str) -> str:
    return chunks * 2  # each result over 1 MB


@dag.node
def total(doubled: list[str], joined: dict[str, int]) -> dict[str, int]:
    return {"doubled": sum(len(d) for d in doubled), "big": joined["length"]}
