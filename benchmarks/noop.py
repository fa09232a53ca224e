"""No-op job bodies and DAG shapes for the benchmarks (importable by RQ and dagrq workers)."""

from __future__ import annotations


def noop(*args: object, **kwargs: object) -> None:
    """An RQ job that does nothing."""
    return None


def fan_in_source(name: str, width: int) -> str:
    """Python source of a dagrq pipeline: root -> p0..p<width-1> -> join."""
    lines = [
        "from dagrq import DAG",
        "",
        f"dag = DAG({name!r})",
        "",
        "@dag.node",
        "def root() -> int:",
        "    return 0",
        "",
    ]
    for i in range(width):
        lines += ["@dag.node", f"def p{i}(root: int) -> int:", f"    return {i}", ""]
    params = ", ".join(f"p{i}: int" for i in range(width))
    lines += ["@dag.node", f"def join({params}) -> int:", "    return 0", ""]
    return "\n".join(lines)
