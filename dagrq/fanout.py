"""Dynamic fan-out (``@dag.map``): expanding a mapped node into item jobs, and running them.

When a mapped node fires, its own job *expands* it (:func:`expand`): it stores the items (one
hash field per item), sets the expected count, and enqueues one RQ job per chunk of items in
pipelined batches. Each chunk job carries only ``(dag, run, node, chunk)``; :func:`run_items`
runs it and records its results in one atomic ``items.lua`` call. The call that records the
last item ends the mapped node and delivers it downstream, where a child receives the list of
results in item order. A map over a mapped node reads that node's results item by item.
"""

from __future__ import annotations

import math
from typing import Any

from . import rqjobs
from .attempt import Attempt, Summary, attempt_error, refused_version, settle_failure
from .commands import running
from .dag import DAG
from .errors import NodeStopped, Skip
from .node import (
    build_kwargs,
    check_output_type,
    item_annotation,
    iter_items,
    serialize_output,
)
from .plan import NodeSpec
from .store import RunStore

#: items stored, and at most this many chunk jobs enqueued, per round trip
BATCH = 1000
#: the first batch of chunk jobs is small so that workers start while the rest are enqueued
FIRST_BATCH = 50


def batches(total: int, first: int = FIRST_BATCH, cap: int = BATCH) -> list[range]:
    """``range(total)`` cut into consecutive ranges that double from ``first`` up to ``cap``.

    Examples:
        >>> [len(r) for r in batches(500, first=50, cap=200)]
        [50, 100, 200, 150]
    """
    out: list[range] = []
    start, size = 0, first
    while start < total:
        out.append(range(start, min(total, start + size)))
        start, size = start + size, min(cap, size * 2)
    return out


def expand(attempt: Attempt) -> Summary:
    """Store the items of the attempt's mapped node and enqueue its chunk jobs; an empty map
    ends the node at once (its children receive ``[]``).

    Raises:
        Exception: reading the items failed (say the source's output is not a list), after
            settling the attempt as a failure.
    """
    try:
        return _expand(attempt)
    except Exception as exc:
        attempt.failed(exc)
        raise


def _expand(attempt: Attempt) -> Summary:
    dag, store, spec = attempt.dag, attempt.store, attempt.spec
    source = dag.specs[spec.map_over or ""]
    if source.map_over is None:
        items = iter_items(dag.codec, attempt.outputs.get(source.name), source.name)
        store.store_items(spec.name, [dag.codec.dumps(item) for item in items], BATCH)
        total = len(items)
    else:  # a map over a map: item i reads result i of the source
        total = store.items_total(source.name)
    store.set_items_total(spec.name, total)  # in place before any item job exists
    if total == 0:
        store.deliver(spec.name, "succeeded")
        return {"node": spec.name, "items": 0}
    chunks = math.ceil(total / spec.chunk)
    for batch in batches(chunks):
        jobs: list[rqjobs.ItemJob] = [("chunk", c) for c in batch]
        rqjobs.enqueue_item_jobs(
            store.connection, store.plan, store.run_id, spec, jobs, spec.chunk_retry
        )
    store.mark_expanded(spec.name)
    return {"node": spec.name, "items": total, "chunks": chunks}


def run_items(
    dag: DAG, job: Any, run_id: str, node: str, chunk: int | None, item: int | None
) -> Summary:
    """Run one chunk of a mapped node's items (or one item retried on its own) and record
    the results in one atomic call.

    Raises:
        Exception: the failed item's own, when RQ is to retry this single-item job.
    """
    spec = dag.specs[node]
    store = RunStore(job.connection, run_id, dag.plan)
    single = item is not None or spec.chunk == 1
    if item is not None:
        indices = [item]
    else:
        first = (chunk or 0) * spec.chunk
        indices = list(range(first, first + spec.chunk))
    read = store.read_chunk(spec, indices)
    if read.state != "running":
        return {"node": node, "outcome": None, "run": read.state or "gone"}
    if read.plan_hash != dag.plan_hash:
        return refused_version(dag, job, run_id, node, read.plan_hash)
    kept = [i for i, index in enumerate(indices) if index < read.total]
    indices, blobs = [indices[i] for i in kept], [read.items[i] for i in kept]
    fn, codec = dag.nodes[node], dag.codec
    annotation = item_annotation(fn)
    kwargs = build_kwargs(fn, spec, store.read_inputs(spec, read.outputs), read.params, codec)
    ok: list[tuple[int, bytes]] = []
    failed: list[tuple[int, str, BaseException]] = []
    attempt = 1 + (spec.retry.max if spec.retry else 0) - (job.retries_left or 0)
    # one capture for the whole chunk (the hot path of a map): each line names its item
    with store.capture_logs(spec.name, attempt) as capture, running(run_id, node, attempt):
        for index, blob in zip(indices, blobs, strict=True):
            capture.item = index
            try:
                item = None if blob is None else codec.loads(blob, annotation)
                kwargs[spec.map_over or ""] = item
                value = fn.fn(**kwargs)
                check_output_type(fn, value)
                ok.append((index, serialize_output(codec, spec, value)))
            except Skip:  # a skipped item: its result is None
                ok.append((index, codec.dumps(None)))
            except NodeStopped:
                raise
            except BaseException as exc:  # SystemExit too: it fails the item, not the worker
                failed.append((index, attempt_error(exc, spec), exc))
    settlement = settle_failure(
        retries_left=job.retries_left,
        items=1 if single else spec.chunk,
        node_retries=spec.retry.max if spec.retry else 0,
    )
    record = [(index, error) for index, error, _ in failed] if settlement == "fail" else []
    if failed and settlement == "retry_alone":
        enqueue_alone(store, spec, [index for index, _, _ in failed])
    if ok or record:
        store.record_items(spec, results=ok, errors=record)
    if failed and single:  # RQ retries the job, or records it failed
        error = failed[0][2]
        raise error.with_traceback(error.__traceback__)
    return {
        "node": node,
        "items": len(indices),
        "failed": len(failed),
        "errors": [error for _, error, _ in failed[:3]],
    }


def enqueue_alone(store: RunStore, spec: NodeSpec, indices: list[int]) -> None:
    """Enqueue single-item jobs for items of a chunk that failed (or whose worker was lost);
    they get the node's remaining retries (the chunk was their first attempt)."""
    assert spec.retry is not None
    rest = spec.retry.model_copy(update={"max": spec.retry.max - 1})
    jobs: list[rqjobs.ItemJob] = [("item", i) for i in indices]
    rqjobs.enqueue_item_jobs(store.connection, store.plan, store.run_id, spec, jobs, rest)
