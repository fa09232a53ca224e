"""Dynamic fan-out (``@dag.map``): expanding a mapped node into item jobs, and running them.

When a mapped node fires, its own job *expands* it (:func:`expand`): it stores the items (one
hash field per item), sets the expected count, and enqueues one RQ job per chunk of items in
pipelined batches. Each chunk job carries only ``(dag, run, node, chunk)``; :func:`run_items`
runs it and records its results in one atomic ``items.lua`` call. The call that records the
last item ends the mapped node and delivers it downstream, where a child receives the list of
results in item order. A map over a mapped node reads that node's results item by item.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from functools import partial
from typing import Any

from ..model.cache import DEFAULT_TTL_S, Entry
from ..model.call import call, from_cache, node_key
from ..model.commands import running
from ..model.dag import DAG
from ..model.jobref import JobRef
from ..model.node import build_kwargs, item_annotation, iter_items
from ..model.plan import NodeSpec
from ..store import rqjobs
from ..store.cache import RedisCache
from ..store.outage import ride_out, unreachable
from ..store.runs import RunStore
from .attempt import (
    Attempt,
    Summary,
    attempt_error,
    refused_version,
    settle_failure,
    store_for,
)

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
        if not unreachable(exc):  # Redis away longer than an attempt waits: not the node's
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
    recorded = store.recorded_items(spec.name)  # a resume kept these: not run again
    chunks = [
        c
        for c in range(spec.chunks(total))
        if not recorded or any(i not in recorded for i in spec.chunk_items(c, total))
    ]
    for batch in batches(len(chunks)):
        jobs: list[rqjobs.ItemJob] = [("chunk", chunks[c]) for c in batch]
        ride_out(
            f"enqueueing item jobs of {spec.name}",
            partial(
                rqjobs.enqueue_item_jobs,
                store.connection,
                store.plan,
                store.run_id,
                spec,
                jobs,
                spec.chunk_retry,
            ),
            store.outage_s,
        )
    store.mark_expanded(spec.name)
    return {"node": spec.name, "items": total, "chunks": len(chunks), "kept": len(recorded)}


def run_items(dag: DAG, job: Any, ref: JobRef) -> Summary:
    """Run the items of one item job of a mapped node (a chunk, or one item retried on its
    own), each through :func:`dagrq.model.call.call`, and record the results in one atomic
    call.

    Raises:
        BaseException: the failed item's own, when RQ is to retry this single-item job.
    """
    spec = dag.specs[ref.node]
    store = store_for(job, ref.run, dag)
    read = store.read_chunk(spec, ref.indices(spec))
    if read.state != "running":
        return {"node": ref.node, "outcome": None, "run": read.state or "gone"}
    if read.plan_hash != dag.plan_hash:
        return refused_version(dag, job, ref, read.plan_hash)
    indexed = zip(ref.indices(spec), read.items, read.recorded, strict=True)
    present = [(i, blob) for i, blob, done in indexed if i < read.total and not done]
    attempt = 1 + spec.retries - (job.retries_left or 0)
    inputs = store.read_inputs(spec, read.outputs)  # Redis out of reach: not the items' fault
    cache = Items(dag, spec, inputs, read.params, store) if spec.cache else None
    hits = cache.hits(present, refresh=read.refresh) if cache is not None else {}
    todo = [(i, blob) for i, blob in present if i not in hits]
    # one capture for the whole chunk (the hot path of a map): each line names its item
    with store.capture_logs(spec.name, attempt) as capture, running(ref.run, ref.node, attempt):
        ok, failed = _call_items(dag, spec, inputs, read.params, todo, capture)
    if cache is not None:
        cache.keep(ok)
        ok = sorted([*ok, *hits.items()])
    settlement = settle_failure(
        retries_left=job.retries_left,
        items=1 if ref.single(spec) else spec.chunk,
        node_retries=spec.retries,
    )
    record = [(index, error) for index, error, _ in failed] if settlement == "fail" else []
    if failed and settlement == "retry_alone":
        enqueue_alone(store, spec, [index for index, _, _ in failed])
    if ok or record:
        store.record_items(spec, results=ok, errors=record)
    if failed and ref.single(spec):  # RQ retries the job, or records it failed
        raise failed[0][2]
    return {
        "node": ref.node,
        "items": len(present),
        "cached": len(hits),
        "failed": len(failed),
        "errors": [error for _, error, _ in failed[:3]],
    }


class Items:
    """A cached mapped node's items in one chunk: each item's key (its code, the shared
    inputs and the item's bytes), looked up in one round trip, kept in one."""

    def __init__(
        self,
        dag: DAG,
        spec: NodeSpec,
        outputs: dict[str, bytes | None],
        params: dict[str, Any],
        store: RunStore,
    ) -> None:
        self.dag, self.spec, self.outputs, self.params, self.store = (
            dag,
            spec,
            outputs,
            params,
            store,
        )
        self.cache = RedisCache(store.connection, dag.name, dag.cache_max_entries, dag.output_store)
        self.keys: dict[int, str | None] = {}

    def hits(
        self, present: Sequence[tuple[int, bytes | None]], *, refresh: bool
    ) -> dict[int, bytes]:
        """``{index: kept output}`` of the items whose entry is there (none with ``refresh``)."""
        node, codec = self.dag.nodes[self.spec.name], self.dag.codec
        annotation = item_annotation(node)
        shared = partial(build_kwargs, node, self.spec, self.outputs, self.params, codec)
        for index, blob in present:
            inputs = partial(_item_inputs, {}, None, self.spec, codec, blob, annotation)
            self.keys[index] = node_key(
                node,
                self.spec,
                self.dag.name,
                self.dag.serializer,
                self.outputs,
                self.params,
                lambda i=inputs: {**shared(), **i()},  # type: ignore[misc]
                item=blob if blob is not None else codec.dumps(None),
            )
        if refresh:
            return {}
        asked = [(i, k) for i, k in self.keys.items() if k is not None]
        found = self.cache.get_many(self.spec.name, [k for _, k in asked])
        return {
            i: hit.output
            for (i, _), entry in zip(asked, found, strict=True)
            if (hit := from_cache(node, codec, entry)) is not None
        }

    def keep(self, ok: Sequence[tuple[int, bytes]]) -> None:
        """Keep the outputs of the items that ran and succeeded (a skipped item's is not
        kept: its output is ``None``'s bytes and it ran as skipped)."""
        none = self.dag.codec.dumps(None)
        now, run_id = time.time(), self.store.run_id
        fresh = [
            (key, Entry(output, run_id, now))
            for index, output in ok
            if output != none and (key := self.keys.get(index)) is not None
        ]
        self.cache.put_many(self.spec.name, fresh, self.spec.cache_ttl or DEFAULT_TTL_S)


def _call_items(
    dag: DAG,
    spec: NodeSpec,
    outputs: dict[str, bytes | None],
    params: dict[str, Any],
    present: Sequence[tuple[int, bytes | None]],
    capture: Any,
) -> tuple[list[tuple[int, bytes]], list[tuple[int, str, BaseException]]]:
    """Call the node once per item: ``(index, output)`` of each item that ended (a skipped
    item's output is ``None``), ``(index, error, exception)`` of each that failed."""
    node, codec = dag.nodes[spec.name], dag.codec
    annotation = item_annotation(node)
    try:  # the inputs every item shares, decoded once
        shared, problem = build_kwargs(node, spec, outputs, params, codec), None
    except Exception as exc:
        shared, problem = {}, exc
    ok: list[tuple[int, bytes]] = []
    failed: list[tuple[int, str, BaseException]] = []
    for index, blob in present:
        capture.item = index
        outcome = call(
            node, spec, codec, partial(_item_inputs, shared, problem, spec, codec, blob, annotation)
        )
        if outcome.error is not None:
            failed.append((index, attempt_error(outcome.error, spec), outcome.error))
        else:
            ok.append(
                (index, outcome.output if outcome.state == "succeeded" else codec.dumps(None))
            )
    return ok, failed


def _item_inputs(
    shared: dict[str, Any],
    problem: Exception | None,
    spec: NodeSpec,
    codec: Any,
    blob: bytes | None,
    annotation: Any,
) -> dict[str, Any]:
    """One item's keyword arguments: the shared inputs with the item, decoded, set in place
    (one dict for the whole chunk: the body gets its own copy of the keywords anyway)."""
    if problem is not None:
        raise problem
    shared[spec.map_over or ""] = None if blob is None else codec.loads(blob, annotation)
    return shared


def enqueue_alone(store: RunStore, spec: NodeSpec, indices: list[int]) -> None:
    """Enqueue single-item jobs for items of a chunk that failed (or whose worker was lost);
    they get the node's remaining retries (the chunk was their first attempt)."""
    assert spec.retry is not None
    rest = spec.retry.model_copy(update={"max": spec.retry.max - 1})
    jobs: list[rqjobs.ItemJob] = [("item", i) for i in indices]
    rqjobs.enqueue_item_jobs(store.connection, store.plan, store.run_id, spec, jobs, rest)
