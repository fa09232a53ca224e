"""Graph shapes beyond one fan-in: a layered many-to-many graph and a long chain.

- layered: 5 layers x 20 nodes, each node joining 5 nodes of the layer above (runs/s over
  concurrent runs), dagrq vs RQ ``depends_on``;
- chain: 1,000 nodes in a row vs 1,000 plain RQ jobs, one worker each: dagrq's per-node
  overhead over a plain RQ job.

Same Redis, RQ ``SimpleWorker``s for both, end seen by the same polled key.

    python -m benchmarks shapes [--quick]
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from rq import Queue
from rq.job import Dependency

from .compare import ROOT, Workers
from .server import redis_server

RESULTS = Path(__file__).resolve().parent / "results"
LAYERS, WIDTH, FAN = 5, 20, 5


def _parents(layer: int, i: int) -> list[int]:
    return [(i + k) % WIDTH for k in range(FAN)] if layer else []


def layered_source(chain: int) -> str:
    """dagrq pipelines: the layered graph (DAG ``layered``) and a chain (DAG ``chain``)."""
    out = [
        "from rq import get_current_job",
        "from dagrq import DAG",
        "",
        'layered = DAG("shape_layered")',
        'chain = DAG("shape_chain")',
        "",
        "def _mark():",
        "    import time",
        "    job = get_current_job()",
        "    job.connection.set(f\"bench:done:{job.kwargs['run']}\", repr(time.time()))",
        "",
    ]
    for layer in range(LAYERS):
        for i in range(WIDTH):
            args = ", ".join(f"l{layer - 1}_{p}: int" for p in _parents(layer, i))
            out += ["@layered.node", f"def l{layer}_{i}({args}) -> int:", "    return 1", ""]
    sinks = ", ".join(f"l{LAYERS - 1}_{i}: int" for i in range(WIDTH))
    out += ["@layered.node", f"def done({sinks}) -> None:", "    _mark()", ""]
    for i in range(chain):
        arg = f"c{i - 1}: int" if i else ""
        out += ["@chain.node", f"def c{i}({arg}) -> int:", "    return 1", ""]
    out += ["@chain.node", f"def end(c{chain - 1}: int) -> None:", "    _mark()", ""]
    return "\n".join(out)


def _wait_all(conn: redis.Redis, tokens: list[str], cap_s: float, t0: float) -> tuple[int, float]:
    pending = set(tokens)
    while pending and time.time() - t0 < cap_s:
        keys = sorted(pending)
        for k, v in zip(keys, conn.mget([f"bench:done:{k}" for k in keys]), strict=True):
            if v is not None:
                pending.discard(k)
        time.sleep(0.01)
    return len(tokens) - len(pending), time.time() - t0


def layered(
    system: str, conn: redis.Redis, runs: int, folder: Path, cap_s: float
) -> dict[str, Any]:
    t0 = time.time()
    tokens = []
    if system == "dagrq":
        from dagrq import loader

        dag = loader.load(f"{folder / 'shapes.py'}:layered")
        tokens = [dag.submit(conn).id for _ in range(runs)]
    else:
        q = Queue("bench", connection=conn)
        for _ in range(runs):
            token = uuid.uuid4().hex
            above: list[Any] = []
            for layer in range(LAYERS):
                row = []
                for i in range(WIDTH):
                    deps = [above[p] for p in _parents(layer, i)]
                    row.append(
                        q.enqueue(
                            "benchmarks.bodies.noop",
                            depends_on=Dependency(jobs=deps) if deps else None,
                        )
                    )
                above = row
            q.enqueue("benchmarks.bodies.mark", token, depends_on=Dependency(jobs=above))
            tokens.append(token)
    done, wall = _wait_all(conn, tokens, cap_s, t0)
    return {
        "shape": "layered",
        "system": system,
        "runs": runs,
        "finished": done,
        "wall_s": round(wall, 3),
        "runs_per_s": round(done / wall, 2),
        "nodes_per_run": LAYERS * WIDTH + 1,
    }


def chain(system: str, conn: redis.Redis, n: int, folder: Path, cap_s: float) -> dict[str, Any]:
    t0 = time.time()
    if system == "dagrq":
        from dagrq import loader

        dag = loader.load(f"{folder / 'shapes.py'}:chain")
        token = dag.submit(conn).id
        done, wall = _wait_all(conn, [token], cap_s, t0)
        jobs = n + 1
    else:
        q = Queue("bench", connection=conn)
        token = uuid.uuid4().hex
        with conn.pipeline() as pipe:
            q.enqueue_many(
                [Queue.prepare_data("benchmarks.bodies.count", (token,)) for _ in range(n + 1)],
                pipeline=pipe,
            )
            pipe.execute()
        while time.time() - t0 < cap_s and int(conn.get(f"bench:count:{token}") or 0) < n + 1:
            time.sleep(0.01)
        wall = time.time() - t0
        done, jobs = int(int(conn.get(f"bench:count:{token}") or 0) >= n + 1), n + 1
    return {
        "shape": "chain",
        "system": system,
        "nodes": jobs,
        "finished": bool(done),
        "wall_s": round(wall, 3),
        "ms_per_node": round(wall / jobs * 1000, 2),
    }


def main(argv: list[str]) -> int:
    quick = "--quick" in argv
    runs, chain_n, repeat = (5, 100, 1) if quick else (20, 1000, 3)
    cap = 10.0 if quick else 60.0
    rows: list[dict[str, Any]] = []
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "shapes.py").write_text(layered_source(chain_n))
        conn = redis.Redis.from_url(url)
        for system in ("dagrq", "rq_native"):
            pool = _workers(system, url, folder, 2)
            try:
                got = []
                for _ in range(repeat):
                    got.append(layered(system, conn, runs, folder, cap))
                    if got[-1]["finished"] < runs:
                        break  # stranded runs: repeating only spends the cap again
                row = dict(got[-1], runs_per_s=statistics.median(r["runs_per_s"] for r in got))
                rows.append(row)
                print(json.dumps(row), flush=True)
            finally:
                pool.stop()
        for system in ("dagrq", "rq_plain"):
            pool = _workers(system, url, folder, 1)
            try:
                got = [chain(system, conn, chain_n, folder, 5 * cap) for _ in range(repeat)]
                row = dict(got[-1], ms_per_node=statistics.median(r["ms_per_node"] for r in got))
                rows.append(row)
                print(json.dumps(row), flush=True)
            finally:
                pool.stop()
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / "shapes.jsonl", "a") as fh:
        for row in rows:
            fh.write(json.dumps({**row, "at": time.time(), "quick": quick}) + "\n")
    return 0


def _workers(system: str, url: str, folder: Path, n: int) -> Workers:
    if system != "dagrq":
        return Workers("rq", url, folder, n)
    import os
    import subprocess
    import sys

    pool = Workers.__new__(Workers)
    env = dict(os.environ, DAGRQ_LOG="WARNING", BENCH_URL=url)
    pool.procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagrq",
                "worker",
                f"{folder / 'shapes.py'}:{attr}",
                "--url",
                url,
                "--worker-class",
                "simple",
            ],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for attr in ("layered", "chain")
        for _ in range(n)
    ]
    time.sleep(3)
    return pool
