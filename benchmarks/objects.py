"""What a big output costs Redis: one parent returns ``--mb`` MB of text and one join reads it,
side by side in one run, each system on a fresh Redis server:

- ``dagrq+file``: ``DAG(output_store="file://...")``: the output is an object, Redis keeps a
  reference;
- ``dagrq``: no store (``max_output_bytes`` raised): the output is a Redis string;
- ``rq``: RQ's own result of the parent, read by a ``depends_on`` child;
- ``celery``: a chord whose header returns the text and whose body gets it (Redis backend).

Reported per cell: seconds from submit to the join's end, Redis's peak memory above its
baseline (``used_memory_peak``), and what Redis still holds after it (``used_memory``). Medians
of ``--repeat``.

    python -m benchmarks objects [--mb 200] [--repeat 3] [--systems dagrq+file,dagrq,rq,celery]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from .keep import keep, save_flag
from .pool import Workers, celery_worker, dagrq_worker, rq_worker
from .server import redis_server

SYSTEMS = ("dagrq+file", "dagrq", "rq", "celery")


def big_text(mb: float) -> str:
    """The parent's body (RQ): ``mb`` MB of text."""
    return "x" * int(mb * 10**6)


def measure(token: str, parent_id: str) -> None:
    """The join's body (RQ): read the parent's result, record its length and when."""
    from rq import get_current_job
    from rq.job import Job

    job = get_current_job()
    assert job is not None
    size = len(Job.fetch(parent_id, connection=job.connection).return_value() or "")
    job.connection.set(f"bench:done:{token}", json.dumps([time.time(), size]))


def source(store: str | None) -> str:
    """The dagrq pipeline: ``big`` -> ``measure`` (with ``store``: kept as an object)."""
    option = f"output_store={store!r}" if store else "max_output_bytes=512 * 2**20"
    return "\n".join(
        [
            "import os, time",
            "from dagrq import DAG",
            f"dag = DAG('bench_objects', {option})",
            "@dag.node",
            "def big(mb: float) -> str:",
            "    return 'x' * int(mb * 10**6)",
            "@dag.node",
            "def measure(big: str) -> int:",
            "    return len(big)",
        ]
    )


def _dagrq(url: str, folder: Path, mb: float, store: bool) -> Callable[[], dict[str, Any]]:
    from dagrq import loader

    path = folder / f"objects_{'store' if store else 'redis'}.py"
    path.write_text(source(f"file://{folder}/objects" if store else None))
    dag = loader.load(f"{path}:dag")

    def one() -> dict[str, Any]:
        run = dag.submit(redis.Redis.from_url(url), mb=mb)
        run.wait(timeout=600)
        assert run.result("measure") == int(mb * 10**6)
        return {}

    one.workers = [dagrq_worker(url, f"{path}:dag", 2)]  # type: ignore[attr-defined]
    return one


def _rq(url: str, mb: float) -> Callable[[], dict[str, Any]]:
    from rq import Queue

    def one() -> dict[str, Any]:
        conn = redis.Redis.from_url(url)
        q, token = Queue("bench", connection=conn), uuid.uuid4().hex
        parent = q.enqueue(big_text, mb, result_ttl=3600)
        q.enqueue(measure, token, parent.id, depends_on=parent)
        _wait_done(conn, token, mb)
        return {}

    one.workers = [rq_worker(url), rq_worker(url)]  # type: ignore[attr-defined]
    return one


def _celery(url: str, mb: float) -> Callable[[], dict[str, Any]]:
    import importlib
    import os

    from . import celery_app

    os.environ["BENCH_URL"] = url  # the app reads its broker and backend at import
    celery_app = importlib.reload(celery_app)  # each cell has a fresh Redis

    def one() -> dict[str, Any]:
        from celery import chord

        token = uuid.uuid4().hex
        chord([celery_app.big.s(mb)])(celery_app.measured.s(token))
        _wait_done(redis.Redis.from_url(url), token, mb)
        celery_app.release_results()
        return {}

    one.workers = [celery_worker(2)]  # type: ignore[attr-defined]
    return one


def _wait_done(conn: redis.Redis, token: str, mb: float, cap_s: float = 600) -> None:
    deadline = time.monotonic() + cap_s
    while (raw := conn.get(f"bench:done:{token}")) is None:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the join of {token} did not end in {cap_s} s")
        time.sleep(0.02)
    assert json.loads(raw)[1] == int(mb * 10**6)


def cell(system: str, mb: float) -> dict[str, Any]:
    """One run of ``system`` on a fresh Redis: seconds, peak and kept Redis memory (MB)."""
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        if system.startswith("dagrq"):
            one = _dagrq(url, Path(tmp), mb, store=system == "dagrq+file")
        else:
            one = _rq(url, mb) if system == "rq" else _celery(url, mb)
        rq_count = 2 if system != "celery" else 0
        with Workers(url, one.workers, rq_count):  # type: ignore[attr-defined]
            conn = redis.Redis.from_url(url)
            base = int(conn.info("memory")["used_memory"])
            began = time.perf_counter()
            one()
            took = time.perf_counter() - began
            info = conn.info("memory")
    return {
        "seconds": took,
        "peak_mb": (int(info["used_memory_peak"]) - base) / 10**6,
        "kept_mb": (int(info["used_memory"]) - base) / 10**6,
    }


def main(argv: list[str]) -> int:
    """Measure, print, and with ``--save`` keep (results/objects.jsonl)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks objects", description=__doc__)
    parser.add_argument("--mb", type=float, default=200.0)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    save_flag(parser)
    args = parser.parse_args(argv)
    rows = []
    for system in args.systems.split(","):
        cells = [cell(system, args.mb) for _ in range(args.repeat)]
        row = {"cell": "big-output", "system": system, "mb": args.mb, "repeat": args.repeat}
        for field in ("seconds", "peak_mb", "kept_mb"):
            row[field] = round(statistics.median(c[field] for c in cells), 2)
        row["at"] = time.time()
        rows.append(row)
        print(json.dumps(row), flush=True)
    print(f"{args.mb:g} MB parent -> join (medians of {args.repeat}):")
    for r in rows:
        print(
            f"  {r['system']:<11} {r['seconds']:>7.2f} s   Redis peak {r['peak_mb']:+.1f} MB, "
            f"kept {r['kept_mb']:+.1f} MB"
        )
    keep("objects", rows, args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
