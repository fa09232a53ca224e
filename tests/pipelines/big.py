"""A node that returns `mb` MiB of text, and a child that measures it: outputs over the limit
(10 MiB by default) fail the node; `roomy` raises the limit to 32 MiB."""

from __future__ import annotations

from dagrq import DAG

dag = DAG("t_big")
roomy = DAG("t_roomy", max_output_bytes=32 * 2**20)


@dag.node
def blob(mb: int) -> str:
    return "x" * (mb * 2**20)


@dag.node
def size(blob: str) -> int:
    return len(blob) + 2


@roomy.node(name="blob")
def roomy_blob(mb: int) -> str:
    return "x" * (mb * 2**20)


@roomy.node(name="size")
def roomy_size(blob: str) -> int:
    return len(blob) + 2
