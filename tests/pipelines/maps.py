"""Maps: over an ordinary node, chunked, a map of a map, joined with ordinary parents,
failures per item, and a chunk whose failing item is retried on its own."""

from __future__ import annotations

from rq import get_current_job

from dagrq import DAG

dag = DAG("t_maps")


@dag.node
def files(n: int = 5) -> list[int]:
    return list(range(n))


@dag.node
def config() -> dict[str, int]:
    return {"k": 3}


@dag.map("files")
def parse(files: int, config: dict[str, int], fail_at: int = -1) -> int:
    if files == fail_at:
        raise ValueError(f"item {files} is bad")
    return files * config["k"]


@dag.map("files", chunk=100)
def parse_chunked(files: int, config: dict[str, int]) -> int:
    return files * config["k"]


@dag.map("parse", chunk=50)
def double(parse: int) -> int:
    return parse * 2


@dag.node
def total(parse: list[int], parse_chunked: list[int], double: list[int]) -> dict[str, int]:
    assert parse == parse_chunked
    return {"n": len(parse), "sum": sum(parse), "double": sum(double)}


@dag.node(trigger="all_done")
def tolerant(parse: list[int | None]) -> list[int | None]:
    return parse


@dag.map("files", chunk=100, retry=2)
def flaky(files: int) -> int:
    job = get_current_job()
    if job is not None:
        key = f"test:flaky:{job.kwargs['run']}:{files}"
        attempt = int(job.connection.incr(key))
        job.connection.expire(key, 600)
        if files == 3 and attempt == 1:
            raise ConnectionError("item 3 fails its first attempt")
    return files


resumable = DAG("t_maps_resumable")


@resumable.node
def listing(n: int) -> list[int]:
    return list(range(n))


@resumable.map("listing")
def measure(listing: int) -> int:
    """Counts its executions per item (one set, all items: any item run twice shows)."""
    import time

    job = get_current_job()
    assert job is not None
    run = job.kwargs["run"]
    job.connection.incr(f"test:measured:{run}")
    job.connection.expire(f"test:measured:{run}", 600)
    time.sleep(0.002)
    return listing * 2


@resumable.node
def summed(measure: list[int]) -> int:
    return sum(measure)
