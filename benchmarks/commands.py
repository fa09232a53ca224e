"""What a command node costs over a Python node: ``items -> map (N items) -> join`` with a
no-op body, as a Python function, a local program (``/bin/sh``) and a container step, on one
``dagrq worker -c 1``; milliseconds per item, median of ``--repeat`` runs, side by side.

    python -m benchmarks commands [--items 200] [--container-items 20] [--repeat 3]
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from .keep import keep, take_save
from .server import redis_server

HERE = Path(__file__).resolve().parent

SOURCE = """
from dagrq import DAG

ARGV = ["/bin/sh", "-c", "cat > /dev/null; echo 1"]


def items(n: int) -> list[int]:
    return list(range(n))


def work(items: int) -> int:
    return 1


def join(work: list[int]) -> int:
    return sum(work)


python, local, container = DAG("b_python"), DAG("b_local"), DAG("b_container")
for dag in (python, local, container):
    dag.node(items)
    dag.node(join)
python.map("items")(work)
local.command("work", ARGV, map_over="items", output=int)
container.command("work", ARGV, map_over="items", output=int, image="localhost/tiny:1")
"""


def measure(url: str, folder: Path, kind: str, n: int) -> float:
    """Seconds for one run of ``kind`` over ``n`` items, workers already started."""
    from dagrq import loader

    dag = loader.load(f"{folder / 'cmdbench.py'}:{kind}")
    conn = redis.Redis.from_url(url)
    started = time.perf_counter()
    run = dag.submit(conn, n=n)
    run.wait(timeout=3600, poll_s=0.01)
    assert run.result("join") == n
    return time.perf_counter() - started


def main(argv: list[str]) -> int:
    """Run every kind, print the table and append the rows to results/commands.jsonl."""
    from dagrq.model.commands import container_runtime
    from dagrq.workers.processes import Processes, worker_argv

    argv, save = take_save(argv)
    opts = {"--items": "200", "--container-items": "20", "--repeat": "3"}
    for key, value in zip(argv[::2], argv[1::2], strict=False):
        opts[key] = value
    sizes = {"python": int(opts["--items"]), "local": int(opts["--items"])}
    try:
        container_runtime()
        sizes["container"] = int(opts["--container-items"])
    except Exception as exc:
        print(f"container cell skipped: {exc}", file=sys.stderr)
    rows: list[dict[str, Any]] = []
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "cmdbench.py").write_text(SOURCE)
        for kind, n in sizes.items():
            procs = Processes(folder, env={"DAGRQ_URL": url, "DAGRQ_LOG": "WARNING"}, cwd=folder)
            procs.start(worker_argv(f"{folder / 'cmdbench.py'}:{kind}", "-c", "1"), 1)
            try:
                measure(url, folder, kind, 5)  # warm-up: imports, scripts
                walls = [measure(url, folder, kind, n) for _ in range(int(opts["--repeat"]))]
            finally:
                procs.stop()
            wall = statistics.median(walls)
            rows.append(
                {
                    "benchmark": "commands",
                    "at": time.time(),
                    "kind": kind,
                    "items": n,
                    "wall_s": round(wall, 3),
                    "ms_per_item": round(wall / n * 1000, 2),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    keep("commands", rows, save)
    base = next(r for r in rows if r["kind"] == "python")["ms_per_item"]
    print("| node kind | items | ms per item (median) | over a Python node |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['kind']} | {r['items']} | {r['ms_per_item']} | "
            f"+{r['ms_per_item'] - base:.2f} ms ({r['ms_per_item'] / base:.1f}x) |"
        )
    return 0
