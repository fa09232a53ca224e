"""The dagrq pipelines every benchmark cell runs, written to one file the workers load.

DAGs: ``fanin`` (items -> N mapped items, one RQ job each -> join), ``fanin100`` (the same
with ``chunk=100``), ``diamond`` (a -> b, c -> d), ``layered`` (5 layers x 20 nodes, each
joining 5 of the layer above, then one sink), ``chain`` (nodes in a row) and ``victim`` (one
node whose first attempt waits to be killed). Every final node marks its end as the RQ and
Celery bodies do: ``SET bench:done:<run id> <time>``.
"""

from __future__ import annotations

from pathlib import Path

LAYERS, WIDTH, FAN = 5, 20, 5

HEAD = """
from rq import get_current_job
from dagrq import DAG

fanin = DAG("bench_fanin")
fanin100 = DAG("bench_fanin100")
diamond = DAG("bench_diamond")
layered = DAG("bench_layered")
chain = DAG("bench_chain")
victim = DAG("bench_victim")


def _mark() -> None:
    import time
    job = get_current_job()
    job.connection.set(f"bench:done:{job.kwargs['run']}", repr(time.time()))


@fanin.node(name="items")
def items1(n: int) -> list[int]:
    return list(range(n))


@fanin.map("items", name="work")
def work1(items: int) -> None:
    return None


@fanin.node(name="join")
def join1(work: list[None]) -> None:
    _mark()


@fanin100.node(name="items")
def items100(n: int) -> list[int]:
    return list(range(n))


@fanin100.map("items", chunk=100, name="work")
def work100(items: int) -> None:
    return None


@fanin100.node(name="join")
def join100(work: list[None]) -> None:
    _mark()


@diamond.node
def a() -> int:
    return 1


@diamond.node
def b(a: int) -> int:
    return a


@diamond.node
def c(a: int) -> int:
    return a


@diamond.node
def d(b: int, c: int) -> None:
    _mark()


@victim.node(retry=1)
def sleeper() -> None:
    import os
    import time
    job = get_current_job()
    run = job.kwargs["run"]
    if job.connection.incr(f"bench:attempt:{run}") == 1:
        job.connection.set(f"bench:pid:{run}", os.getpid())
        time.sleep(600)  # killed here
    _mark()
"""


def layer_parents(layer: int, i: int) -> list[int]:
    """Indices in layer ``layer - 1`` that node ``i`` of ``layer`` joins."""
    return [(i + k) % WIDTH for k in range(FAN)] if layer else []


def source(chain: int) -> str:
    """Python source of all benchmark DAGs, with a ``chain`` of that many nodes plus an end."""
    out = [HEAD]
    for layer in range(LAYERS):
        for i in range(WIDTH):
            args = ", ".join(f"l{layer - 1}_{p}: int" for p in layer_parents(layer, i))
            out += ["@layered.node", f"def l{layer}_{i}({args}) -> int:", "    return 1", ""]
    sinks = ", ".join(f"l{LAYERS - 1}_{i}: int" for i in range(WIDTH))
    out += ["@layered.node", f"def done({sinks}) -> None:", "    _mark()", ""]
    for i in range(chain):
        arg = f"c{i - 1}: int" if i else ""
        out += ["@chain.node", f"def c{i}({arg}) -> int:", "    return 1", ""]
    out += ["@chain.node", f"def end(c{chain - 1}: int) -> None:", "    _mark()", ""]
    return "\n".join(out)


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


def write(folder: Path, chain: int) -> Path:
    """Write the pipelines to ``folder/bench_dags.py``; return the file."""
    path = folder / "bench_dags.py"
    path.write_text(source(chain))
    return path
