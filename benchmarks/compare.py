"""dagrq vs RQ's ``depends_on`` vs Celery's chord (vs plain RQ jobs), every cell in one run.

One redis-server (started here, persistence off) serves every system; each cell gets the same
number of worker processes (RQ and dagrq: RQ's ``SimpleWorker``; Celery: prefork with the
same concurrency) and no-op bodies. Cells: fan-in ``1 -> N -> 1``, concurrent diamonds, a
layered many-to-many graph, a chain (per-node overhead), and the arrival step alone.

    python -m benchmarks compare --quick     # smoke, about a minute; numbers not for quoting
    python -m benchmarks compare             # the full table (~15 minutes), into docs/
    python -m benchmarks compare --only fan-in,chain
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import redis

from . import cells, dags, report
from .keep import keep, save_flag
from .pool import for_system
from .server import redis_server

SYSTEMS = (
    "dagrq",
    "dagrq_chunk100",
    "dagrq_simple",
    "dagrq_isolate",
    "rq_native",
    "rq_plain",
    "celery",
)
#: the kind of worker processes each system runs on (see pool.for_system)
WORKERS = {"dagrq_chunk100": "dagrq"}
CELLS = ("fan-in", "diamonds", "layered", "chain", "killed", "memory", "ceiling")
#: fan-in sizes the reference columns (bare SimpleWorkers, --isolate) run at
REFERENCE_NS = (100, 1000, 3000)
#: a cell whose first run takes longer than this is not repeated (its one run is reported)
LONG_S = 60.0


def median_row(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """One row from repeated runs: the median of ``key`` over finished runs, with min-max."""
    done = [r[key] for r in runs if r.get(key) is not None and not r.get("capped")]
    row = dict(runs[-1], repeats=len(runs))
    row[key] = statistics.median(done) if done else None
    row[f"{key}_min"], row[f"{key}_max"] = (min(done), max(done)) if done else (None, None)
    return row


def repeat(measure: Callable[[], dict[str, Any]], times: int, key: str) -> dict[str, Any]:
    """Run ``measure`` up to ``times``; stop early once a run is capped, strands runs or is long."""
    runs: list[dict[str, Any]] = []
    for _ in range(times):
        runs.append(measure())
        last = runs[-1]
        stranded = "finished" in last and last["finished"] < last["runs"]
        if last.get("capped") or stranded or (last.get("wall_s") or 0) > LONG_S:
            break
    row = median_row(runs, key)
    print(json.dumps(row), flush=True)
    return row


def systems_available() -> tuple[str, ...]:
    """Every system, less Celery when it is not installed."""
    try:
        import celery  # noqa: F401
    except ImportError:
        print("celery not installed: skipping Celery (pip install -e '.[bench]')")
        return tuple(s for s in SYSTEMS if s != "celery")
    return SYSTEMS


def main(argv: list[str]) -> int:
    """Run the selected cells; append JSON lines to results/compare.jsonl; print the report
    (and, in full mode with every cell, write it and the plot into docs/)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks compare")
    parser.add_argument("--quick", action="store_true", help="small sizes, 10 s caps: a smoke")
    parser.add_argument("--only", default=",".join(CELLS), help=f"cells, of {','.join(CELLS)}")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per system")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="fan-in systems to run")
    parser.add_argument("--sizes", default=None, help="fan-in widths, e.g. 1000,3000")
    parser.add_argument("--cap", type=float, default=None, help="seconds before a run is capped")
    parser.add_argument("--repeat", type=int, default=None, help="runs per cell (median)")
    save_flag(parser)
    args = parser.parse_args(argv)
    chosen = [c.strip() for c in args.only.split(",") if c.strip()]
    unknown = set(chosen) - set(CELLS)
    if unknown:
        parser.error(f"unknown cell(s) {', '.join(sorted(unknown))}; choose from {CELLS}")
    quick, n_workers = args.quick, args.workers
    times = args.repeat or (1 if quick else 3)
    cap = args.cap or (10.0 if quick else 120.0)
    wanted = {s.strip() for s in args.systems.split(",")}
    systems = tuple(s for s in systems_available() if s in wanted)
    chain_n = 100 if quick else 1000
    rows: list[dict[str, Any]] = []
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        path = dags.write(Path(tmp), chain_n)
        os.environ["BENCH_URL"] = url  # for the Celery app imported in this process
        b = cells.Bench(redis.Redis.from_url(url), path)

        def workers(system: str, attr: str, n: int = n_workers) -> Any:
            """Fresh workers on an empty database: a capped or stranded cell leaves jobs
            behind that the next cell's workers must not inherit."""
            b.conn.flushdb()
            kind = WORKERS.get(system, system.split("_")[0])
            return for_system(kind, url, f"{path}:{attr}", n)

        if "fan-in" in chosen:
            sizes = [10, 100] if quick else [10, 100, 1000, 3000, 10000]
            if args.sizes:
                sizes = [int(n) for n in args.sizes.split(",")]
            for system in systems:
                extra = [] if args.sizes else [1000] if quick else [100000]
                todo = sizes + extra if system == "dagrq_chunk100" else sizes
                if system in ("dagrq_simple", "dagrq_isolate") and not args.sizes:
                    todo = [n for n in sizes if n in REFERENCE_NS] or sizes[-1:]
                attr = "fanin100" if system == "dagrq_chunk100" else "fanin"
                with workers(system, attr):
                    cells.fanin(system, b, 10, cap)  # warm-up, not recorded: imports, scripts
                    for n in todo:
                        row = repeat(partial(cells.fanin, system, b, n, cap), times, "wall_s")
                        rows.append(row)
                        if row["capped"]:
                            break  # a larger N would only hit the cap again
        if "diamonds" in chosen:
            for system in ("dagrq", "rq_native", "celery"):
                if system in systems:
                    with workers(system, "diamond"):
                        runs = 50 if quick else 1000
                        measure = partial(cells.diamonds, system, b, runs, cap / 2)
                        rows.append(repeat(measure, times, "runs_per_s"))
        if "layered" in chosen:
            for system in ("dagrq", "rq_native"):
                with workers(system, "layered"):
                    runs = 3 if quick else 20
                    measure = partial(cells.layered, system, b, runs, cap / 4)
                    rows.append(repeat(measure, times, "runs_per_s"))
        if "chain" in chosen:
            for system in ("dagrq", "dagrq_simple", "dagrq_isolate", "rq_plain"):
                if system in systems:
                    with workers(system, "chain", 1):
                        measure = partial(cells.chain, system, b, chain_n, cap)
                        rows.append(repeat(measure, times, "ms_per_node"))
        if "killed" in chosen:
            with workers("dagrq", "victim"):
                rows.append(repeat(partial(cells.killed, b, cap), times, "rerun_s"))
        if "memory" in chosen:
            with workers("dagrq", "fanin") as pool:
                marks = [100, 1000] if quick else [100, 10000]
                row = cells.memory(b, pool.children, marks, cap * 4)
                print(json.dumps(row), flush=True)
                rows.append(row)
        if "ceiling" in chosen:
            row = cells.ceiling(b.conn, 2000 if quick else 20000)
            print(json.dumps(row), flush=True)
            rows.append(row)
        server = str(b.conn.info("server")["redis_version"])
        if "celery" in systems:
            from .celery_app import release_results

            release_results()  # while the server is still up
    stamp = time.time()
    meta = {"at": stamp, "quick": quick, "redis": server, "workers": n_workers}
    keep("compare", [{**row, **meta} for row in rows], args.save)
    text = report.markdown(rows, n_workers)
    print(text)
    full = set(chosen) == set(CELLS) and not (args.sizes or args.cap or args.repeat)
    if args.save and not quick and full:
        report.plot(rows, report.DOCS / "bench-fanin.png")
        report.write_docs(text, server)
    return 0
