"""Dynamic fan-out (``@dag.map``): expanding a mapped node into item jobs, and running them.

When a mapped node fires, its own job *expands* it: it stores the items (one hash field per
item), sets the expected count, and enqueues one RQ job per chunk of items in pipelined
batches (RQ's ``enqueue_many``). Each chunk job carries only ``(dag, run, node, chunk)``. Its
results arrive in one atomic ``items.lua`` call per chunk; the call that records the last item
ends the mapped node and delivers it downstream, where a child receives the list of results in
item order. A map over a mapped node reads that node's results item by item.
"""

from __future__ import annotations

import json
import math
import time
import traceback as tb
from typing import Any

from rq import Callback, Queue
from rq.job import Job

from . import join, keys
from .dag import DAG, build_kwargs, iter_items
from .plan import NodeSpec
from .runtime import (
    RQ_SERIALIZER,
    DagrqJob,
    attempt_error,
    deliver,
    read_inputs,
    refuse_changed,
    rq_retry,
    serialize_output,
)

#: items stored, and at most this many chunk jobs enqueued, per round trip
BATCH = 1000
#: the first batch of chunk jobs is small so that workers start while the rest are enqueued
FIRST_BATCH = 50


def batches(total: int, first: int = FIRST_BATCH, cap: int = BATCH) -> list[range]:
    """``range(total)`` cut into consecutive ranges that double from ``first`` up to ``cap``."""
    out: list[range] = []
    start, size = 0, first
    while start < total:
        out.append(range(start, min(total, start + size)))
        start, size = start + size, min(cap, size * 2)
    return out


def expand(
    graph: DAG,
    job: Job,
    run: str,
    spec: NodeSpec,
    outputs: dict[str, bytes | None],
    params: dict[str, Any],
) -> dict[str, Any]:
    """Store the items of mapped node ``spec`` and enqueue its chunk jobs; an empty map ends
    the node at once (its children receive ``[]``)."""
    conn: Any = job.connection
    codec = graph.codec
    source = graph.specs[spec.map_over or ""]
    nodes_key = keys.nodes_key(run)
    if source.map_over is None:
        items = iter_items(codec, outputs.get(source.name), source.name)
        items_key = keys.items_key(run, spec.name)
        for start in range(0, len(items), BATCH):
            batch = {
                str(i): codec.dumps(items[i]) for i in range(start, min(len(items), start + BATCH))
            }
            with conn.pipeline(transaction=False) as pipe:
                pipe.hset(items_key, mapping=batch)
                pipe.expire(items_key, graph.ttl_s)
                pipe.execute()
        total = len(items)
    else:  # a map over a map: item i reads result i of the source
        total = int(conn.hget(nodes_key, f"{source.name}:items_total") or 0)
    # the expected count is in place before any item job exists (and never reset)
    conn.hsetnx(nodes_key, f"{spec.name}:items_total", total)
    if total == 0:
        deliver(graph.specs, graph.ttl_s, conn, run, spec.name, "succeeded")
        return {"node": spec.name, "items": 0}
    chunks = math.ceil(total / spec.chunk)
    timeout = spec.timeout * spec.chunk if spec.timeout else -1
    retry = rq_retry(spec.retry) if spec.chunk == 1 else None
    for jobs in batches(chunks):
        chunk_jobs = [("chunk", c) for c in jobs]
        _enqueue(graph.name, graph.ttl_s, conn, run, spec, chunk_jobs, timeout, retry)
    conn.hset(nodes_key, f"{spec.name}:expanded", repr(time.time()))
    return {"node": spec.name, "items": total, "chunks": chunks}


def run_items(
    graph: DAG, job: Job, run: str, spec: NodeSpec, chunk: int | None, item: int | None
) -> dict[str, Any]:
    """Run one chunk of a mapped node's items (or one item retried on its own) and record
    the results in one atomic call."""
    conn: Any = job.connection
    codec = graph.codec
    nodes_key = keys.nodes_key(run)
    if item is not None:
        indices, single = [item], True
    else:
        assert chunk is not None
        indices = list(range(chunk * spec.chunk, (chunk + 1) * spec.chunk))
        single = spec.chunk == 1
    source = graph.specs[spec.map_over or ""]
    others = [p for p in spec.data_parents if p != source.name]
    items_key = (
        keys.items_key(run, spec.name)
        if source.map_over is None
        else keys.map_results_key(run, source.name)
    )
    with conn.pipeline(transaction=False) as pipe:  # one round trip for everything read
        pipe.hmget(keys.run_key(run), "state", "params", "plan")
        pipe.hget(nodes_key, f"{spec.name}:items_total")
        # the last chunk may count a few indices past the end: readers clamp to the total
        pipe.hincrby(nodes_key, f"{spec.name}:items_started", len(indices))
        pipe.hmget(items_key, [str(i) for i in indices])
        if others:
            pipe.mget([keys.output_key(run, p) for p in others])
        (state, params_json, plan_hash), total_raw, _, blobs, *rest = pipe.execute()
    if state != b"running":
        return {"node": spec.name, "outcome": None, "run": state.decode() if state else "gone"}
    if plan_hash.decode() != graph.plan_hash:
        refuse_changed(graph, job, run, spec.name, plan_hash.decode())
    total = int(total_raw or 0)
    kept = [i for i, index in enumerate(indices) if index < total]
    indices, blobs = [indices[i] for i in kept], [blobs[i] for i in kept]
    params = json.loads(params_json or b"{}")
    raw_outputs: dict[str, bytes | None] = dict(zip(others, rest[0], strict=True)) if others else {}
    outputs = read_inputs(graph, conn, run, spec, raw_outputs)
    node = graph.nodes[spec.name]
    annotation = node.signature.parameters[source.name].annotation
    kwargs = build_kwargs(node, spec, outputs, params, codec)
    ok: list[tuple[int, bytes]] = []
    failed: list[tuple[int, str, BaseException]] = []
    for index, blob in zip(indices, blobs, strict=True):
        try:
            kwargs[source.name] = None if blob is None else codec.loads(blob, annotation)
            ok.append((index, serialize_output(graph, spec.name, node.fn(**kwargs))))
        except Exception as exc:
            failed.append((index, attempt_error(exc, spec), exc))
    record: list[tuple[int, str]] = []
    retry_alone: list[int] = []
    if failed and single and job.should_retry:
        pass  # RQ retries this job; nothing is final yet
    elif failed and not single and spec.retry and spec.retry.max > 0:
        retry_alone = [index for index, _, _ in failed]  # each failed item retried on its own
    else:
        record = [(index, error) for index, error, _ in failed]
    if retry_alone:
        enqueue_alone(graph.name, graph.ttl_s, conn, run, spec, retry_alone)
    if ok or record:
        children = [graph.specs[c] for c in spec.children]
        done = join.record_items(
            conn, run, spec, children, ttl_s=graph.ttl_s, results=ok, errors=record
        )
        for child in done.skipped:
            deliver(graph.specs, graph.ttl_s, conn, run, child, "skipped")
    if failed and single:
        first = failed[0][2]
        raise first.with_traceback(first.__traceback__)
    return {
        "node": spec.name,
        "items": len(indices),
        "failed": len(failed),
        "errors": [tb.format_exception_only(type(e), e)[-1].strip() for _, _, e in failed[:3]],
    }


def enqueue_alone(
    dag: str, ttl_s: int, conn: Any, run: str, spec: NodeSpec, indices: list[int]
) -> None:
    """Enqueue single-item jobs for items of a chunk that failed (or whose worker was lost);
    they get the node's remaining retries (the chunk was their first attempt)."""
    assert spec.retry is not None
    rest = spec.retry.model_copy(update={"max": spec.retry.max - 1})
    jobs = [("item", i) for i in indices]
    _enqueue(dag, ttl_s, conn, run, spec, jobs, spec.timeout or -1, rq_retry(rest))


def _enqueue(
    dag: str,
    ttl_s: int,
    conn: Any,
    run: str,
    spec: NodeSpec,
    jobs: list[tuple[str, int]],
    timeout: int,
    retry: Any,
) -> None:
    """Enqueue item jobs, ``("chunk", c)`` or ``("item", i)``, in one pipelined batch."""
    queue = Queue(spec.queue_name, connection=conn, serializer=RQ_SERIALIZER, job_class=DagrqJob)
    job_ids = {"chunk": keys.chunk_job_id, "item": keys.item_job_id}
    datas = [
        Queue.prepare_data(
            keys.ENTRYPOINT,
            kwargs={"dag": dag, "run": run, "node": spec.name, kind: n},
            job_id=job_ids[kind](run, spec.name, n),
            description=f"{dag}.{spec.name}[{run}] {kind} {n}",
            timeout=timeout,
            result_ttl=1,  # TRYING
            failure_ttl=ttl_s,
            ttl=ttl_s,
            retry=retry,
            on_failure=Callback(keys.ON_FAILURE),
        )
        for kind, n in jobs
    ]
    with conn.pipeline() as pipe:
        queue.enqueue_many(datas, pipeline=pipe)
        pipe.execute()
