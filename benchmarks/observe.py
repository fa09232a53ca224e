"""What watching costs: N runs (default 300) of a fan-out/fan-in (a root, 4 leaves, a join)
on 2 worker processes, each system plain and observed, side by side in one run.

- dagrq: plain (its Prometheus counters are always kept, by the Lua steps), with an
  ``on_success`` hook (a hook stream entry per run, read by the workers' hook thread), and
  with OpenTelemetry tracing on in the workers (a span per node attempt and per run, written
  by the SDK's console exporter to a file: ``DAGRQ_OTEL_FILE``).
- Celery chord (``group(4) | join``): plain, and with task events on (``-E``), which Flower
  and celery-exporter need for their metrics.

Each cell runs on an emptied Redis (one server for all); the rows give runs per second, the
slowdown against the system's own plain cell, and Redis commands per run. Then one
``/metrics`` scrape of the dagrq server just after its runs ended: its time and commands (the
ended runs are still in the active set, which the reconciler prunes every sixth of a lease).

    python -m benchmarks observe [--runs 300] [--workers 2] [--repeat 3] [--save]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis

from .keep import keep, save_flag
from .pool import ROOT, Workers, celery_worker, dagrq_worker
from .server import command_count, redis_server

PIPELINE = """
from benchmarks.bodies import mark
from dagrq import DAG


def heard(event):
    pass


def root(token: str) -> int:
    return 1


def leaf0(root: int) -> int:
    return root


def leaf1(root: int) -> int:
    return root


def leaf2(root: int) -> int:
    return root


def leaf3(root: int) -> int:
    return root


def join(token: str, leaf0: int, leaf1: int, leaf2: int, leaf3: int) -> None:
    mark(token)


dag = DAG("bench_obs")
hooked = DAG("bench_obs_hooked", on_success=heard)
for d in (dag, hooked):
    for fn in (root, leaf0, leaf1, leaf2, leaf3, join):
        d.node(fn)
"""


def _wait(conn: redis.Redis, tokens: list[str], began: float) -> float:
    """Seconds from ``began`` until every token's join marked its end."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if all(m is not None for m in conn.mget([f"bench:done:{t}" for t in tokens])):
            return time.monotonic() - began
        time.sleep(0.05)
    raise TimeoutError("runs did not end within 600 s")


def _row(system: str, n: int, seconds: float, commands: int) -> dict[str, Any]:
    return {
        "system": system,
        "runs": n,
        "seconds": round(seconds, 2),
        "runs_per_s": round(n / seconds, 1),
        "commands_per_run": round(commands / n, 1),
    }


def dagrq_cell(url: str, folder: Path, n: int, procs: int, how: str) -> dict[str, Any]:
    """N runs on a ``dagrq worker`` pool; ``how``: plain, hooks or tracing."""
    from dagrq import loader

    path = folder / "obs_bench.py"
    path.write_text(PIPELINE)
    attr = "hooked" if how == "hooks" else "dag"
    target = f"{path}:{attr}"
    dag = loader.load(target)
    conn = redis.Redis.from_url(url)
    if how == "tracing":
        os.environ["DAGRQ_OTEL_FILE"] = str(folder / "spans.jsonl")
    try:
        with Workers(url, [dagrq_worker(url, target, procs)], procs):
            tokens = [f"d{i}" for i in range(n)]
            before, began = command_count(conn), time.monotonic()
            for t in tokens:
                dag.submit(conn, token=t)
            seconds = _wait(conn, tokens, began)
            commands = command_count(conn) - before
    finally:
        os.environ.pop("DAGRQ_OTEL_FILE", None)
    return _row(f"dagrq {how}", n, seconds, commands)


def celery_cell(url: str, n: int, procs: int, events: bool) -> dict[str, Any]:
    """N chords on one Celery worker of ``procs`` processes, with task events or not (the app
    binds ``$BENCH_URL``, which must be ``url``, when first imported)."""
    from celery import chord

    from .celery_app import mark, noop, release_results

    conn = redis.Redis.from_url(url)
    argv = celery_worker(procs) + (["-E"] if events else [])
    with Workers(url, [argv], 0):
        tokens = [f"c{i}" for i in range(n)]
        before, began = command_count(conn), time.monotonic()
        for t in tokens:
            chord([noop.s() for _ in range(4)])(mark.s(t))
        seconds = _wait(conn, tokens, began)
        commands = command_count(conn) - before
    release_results()
    return _row("Celery chord" + (" + events (-E)" if events else ""), n, seconds, commands)


def scrape(url: str) -> dict[str, Any]:
    """One scrape of the dagrq server after its runs: ms and commands."""
    from dagrq import metrics

    conn = redis.Redis.from_url(url)
    registry = metrics.registry(conn)
    metrics.render(registry)  # warm
    before, began = command_count(conn), time.perf_counter()
    body = metrics.render(registry)
    ms = (time.perf_counter() - began) * 1000
    return {"scrape_ms": round(ms, 1), "scrape_commands": command_count(conn) - before,
            "scrape_bytes": len(body)}  # fmt: skip


def main(argv: list[str]) -> int:
    """Every cell ``--repeat`` times, alternating; medians in a table."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks observe", description=__doc__)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", default="dagrq,celery")
    save_flag(parser)
    args = parser.parse_args(argv)
    wanted = {s.strip() for s in args.systems.split(",")}
    sys.path.insert(0, str(ROOT))
    n, w = args.runs, args.workers
    cells: list[tuple[str, Any]] = []
    if "dagrq" in wanted:
        for how in ("plain", "hooks", "tracing"):
            cells.append(("dagrq", how))
    if "celery" in wanted:
        cells += [("celery", False), ("celery", True)]
    seen: dict[str, list[dict[str, Any]]] = {}
    scraped: dict[str, Any] = {}
    with redis_server() as url:  # one server (Celery's app binds its URL once), emptied per cell
        os.environ["BENCH_URL"] = url
        for _ in range(args.repeat):
            for system, how in cells:
                redis.Redis.from_url(url).flushall()
                with tempfile.TemporaryDirectory() as tmp:
                    if system == "dagrq":
                        row = dagrq_cell(url, Path(tmp), n, w, how)
                        if how == "plain":
                            scraped = scrape(url)
                    else:
                        row = celery_cell(url, n, w, how)
                seen.setdefault(row["system"], []).append(row)
    rows = [_median(rs) for rs in seen.values()]
    for r in rows:
        plain = next(x for x in rows if x["system"].split()[0] == r["system"].split()[0])
        r["slowdown"] = round(plain["runs_per_s"] / r["runs_per_s"], 3)
    print(f"{n} runs (root, 4 leaves, join), {w} worker processes, medians of {args.repeat}, "
          f"{os.cpu_count()} cores")  # fmt: skip
    print("| system | runs/s | slowdown vs its plain cell | commands / run |")
    print("|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['system']} | {r['runs_per_s']} | x{r['slowdown']} | {r['commands_per_run']} |")
    if scraped:
        print(
            f"one /metrics scrape after {n} ended runs: {scraped['scrape_ms']} ms, "
            f"{scraped['scrape_commands']} Redis commands, {scraped['scrape_bytes']} bytes"
        )
    stamp = time.time()
    keep("observe", [{**r, **scraped, "at": stamp, "workers": w} for r in rows], args.save)
    return 0


def _median(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The row of median throughput among repeats of one cell."""
    ordered = sorted(rows, key=lambda r: r["runs_per_s"])
    return {**ordered[len(ordered) // 2], "repeats": [r["runs_per_s"] for r in rows]}
