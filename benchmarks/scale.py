"""``python -m benchmarks scale``: the scale limits at full size, one after the other.

A 10,000-node chain and a 10,000-parent join (validate, plan, submit and run), a 100,000-item
map (chunk=100), and a 20 MB output (refused at the default limit). Each cell reports its wall
seconds, the submitting process's peak memory and Redis's peak memory, into
``benchmarks/results/scale.jsonl``; docs/reliability.md quotes them.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from dagrq import RunFailed, loader
from dagrq.model.preflight import preflight
from dagrq.workers.processes import Processes, worker_argv

from .keep import keep, save_flag
from .server import redis_server


def chain(name: str, n: int) -> str:
    lines = ["from dagrq import DAG", f"dag = DAG({name!r})", "", "@dag.node", "def n0() -> int:"]
    lines += ["    return 0", ""]
    for i in range(1, n):
        lines += ["@dag.node", f"def n{i}(n{i - 1}: int) -> int:", f"    return n{i - 1} + 1", ""]
    return "\n".join(lines)


def join(name: str, n: int) -> str:
    lines = ["from dagrq import DAG", f"dag = DAG({name!r})", ""]
    for i in range(n):
        lines += ["@dag.node", f"def p{i}() -> int:", f"    return {i}", ""]
    args = ", ".join(f"p{i}: int" for i in range(n))
    body = ", ".join(f"p{i}" for i in range(n))  # a list, not a 10,000-term sum: the compiler
    lines += ["@dag.node", f"def join({args}) -> int:", f"    return sum([{body}])", ""]
    return "\n".join(lines)


def mapped(name: str) -> str:
    return "\n".join(
        [
            "from dagrq import DAG",
            f"dag = DAG({name!r})",
            "@dag.node",
            "def items(n: int) -> list[int]:",
            "    return list(range(n))",
            "@dag.map('items', chunk=100)",
            "def square(items: int) -> int:",
            "    return items * items",
            "@dag.node",
            "def total(square: list[int]) -> int:",
            "    return sum(square)",
            "",
        ]
    )


def big(name: str) -> str:
    return "\n".join(
        [
            "from dagrq import DAG",
            f"dag = DAG({name!r})",
            "@dag.node",
            "def blob(mb: int) -> str:",
            "    return 'x' * (mb * 2**20)",
            "",
        ]
    )


def cell(url: str, folder: Path, name: str, source: str, params: dict[str, Any]) -> dict[str, Any]:
    """Validate, plan, submit and run one pipeline with 2 workers; the figures."""
    path = folder / f"{name}.py"
    path.write_text(source)
    conn = redis.Redis.from_url(url)
    started = time.perf_counter()
    dag = loader.load(f"{path}:dag")
    dag.validate()
    preflight(dag.plan, dag.param_types)
    validated = time.perf_counter()
    run = dag.submit(conn, **params)
    submitted = time.perf_counter()
    procs = Processes(env={"DAGRQ_URL": url, "DAGRQ_LOG": "WARNING"}, cwd=folder)
    procs.start(worker_argv(f"{path}:dag", "-c", "2"), 1)
    outcome = "succeeded"
    try:
        run.wait(timeout=3600)
    except RunFailed as exc:
        outcome = f"failed: {next(iter(exc.failed.values()))}"
    finally:
        procs.stop()
    ended = time.perf_counter()
    return {
        "cell": name,
        "nodes": len(dag.specs),
        "outcome": outcome[:200],
        "validate_plan_s": round(validated - started, 2),
        "submit_s": round(submitted - validated, 2),
        "run_s": round(ended - submitted, 2),
        "client_peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "redis_peak_mib": round(int(conn.info("memory")["used_memory_peak"]) / 2**20),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks scale", description=__doc__)
    parser.add_argument("--nodes", type=int, default=10_000)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--only", nargs="*", default=None, help="run only these cells")
    save_flag(parser)
    args = parser.parse_args(argv)
    cells = [
        ("chain", chain("scale_chain", args.nodes), {}),
        ("join", join("scale_join", args.nodes), {}),
        ("map", mapped("scale_map"), {"n": args.items}),
        ("output_20mb", big("scale_big"), {"mb": 20}),
    ]
    cells = [c for c in cells if args.only is None or c[0] in args.only]
    rows = []
    for name, source, params in cells:  # a fresh server per cell: its peak memory is the cell's
        with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
            row = cell(url, Path(tmp), name, source, params)
        print(json.dumps(row), flush=True)
        rows.append(row)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S")
    keep("scale", [{**row, "at": stamp} for row in rows], args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
