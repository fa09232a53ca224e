"""The JSON API of ``dagrq ui`` (the CLI's ``--json`` shapes), its actions and its event
stream (server-sent events)."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import anyio
from redis.exceptions import RedisError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from ..client import Run
from ..cluster import for_run
from ..errors import DagrqError, NoResult, RunNotFound
from ..model.objects import head, is_ref, ref_of
from ..model.shapes import explanation_json, node_json, status_json, summary_json
from ..model.waits import Waiting
from ..model.words import in_words
from ..store import nodelogs
from ..store.runs import RunStore
from .access import guard, in_thread

#: characters of an output shown on a node's panel, and of each of its inputs
PREVIEW_CHARS, INPUT_CHARS = 2000, 300
#: how long one blocking read of a run's events waits: the idle cost of an open run page,
#: and its heartbeat (the store caps a block under redis-py's socket timeout)
BLOCK_MS = 4_000
#: how soon a browser reconnects a dropped stream (it resumes after the last event it saw)
RETRY_MS = 2_000


async def pools(request: Request) -> Response:
    """``/api/pools``: every pool, node concurrency limit and rate limit, with holders and
    waiters (``dagrq pools --json``)."""
    if (denied := guard(request)) is not None:
        return denied
    from .. import pools as api

    found = await in_thread(lambda: api.list(request.app.state.connection))
    return JSONResponse([x.to_dict() for x in found])


async def metrics(request: Request) -> Response:
    """``/metrics``: the deployment's Prometheus metrics (:mod:`dagrq.metrics`); off loopback
    the UI's token is required, which Prometheus sends as ``Authorization: Bearer <token>``
    (its scrape config's ``authorization`` block)."""
    if (denied := guard(request)) is not None:
        return denied
    from .. import metrics as prom

    state = request.app.state
    if getattr(state, "metrics", None) is None:
        state.metrics = prom.registry(state.connection)
    body = await in_thread(prom.render, state.metrics)
    return Response(body, media_type=prom.CONTENT_TYPE_LATEST)


async def runs(request: Request) -> Response:
    """``/api/runs?dag=&state=&limit=``: run summaries, newest first."""
    if (denied := guard(request)) is not None:
        return denied
    q, connection = request.query_params, request.app.state.connection
    try:
        found = await in_thread(
            lambda: Run.list(
                connection,
                dag=q.get("dag") or None,
                state=q.get("state") or None,
                limit=int(q.get("limit", "50")),
            )
        )
    except ValueError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    return JSONResponse([summary_json(s) for s in found])


async def run(request: Request) -> Response:
    """``/api/runs/<id>``: one run's status."""
    if (denied := guard(request)) is not None:
        return denied
    try:
        handle = await in_thread(
            Run.fetch, request.path_params["run_id"], request.app.state.connection
        )
        return JSONResponse(status_json(await in_thread(handle.status)))
    except RunNotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)


async def node(request: Request) -> Response:
    """``/api/runs/<id>/nodes/<node>``: one node, why it is where it is, its output's start
    and its last 200 log lines."""
    if (denied := guard(request)) is not None:
        return denied
    run_id, name = request.path_params["run_id"], request.path_params["node"]
    try:
        handle = await in_thread(Run.fetch, run_id, request.app.state.connection)
        status = await in_thread(handle.status)
    except RunNotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    if name not in status.nodes:
        return JSONResponse({"error": f"run {run_id} has no node {name!r}"}, status_code=404)
    out = node_json(status.nodes[name])
    why = await in_thread(handle.explain, name)
    out["why"] = explanation_json(why)
    out["words"] = in_words(status.nodes[name], why)
    out["signal"] = await in_thread(_signal_form, handle, name)
    out["output_preview"], out["output_truncated"] = await in_thread(_preview, handle, name)
    data = handle.plan().specs[name].data_parents if name in handle.plan().specs else ()
    out["inputs"] = {
        p: (await in_thread(_preview, handle, p, INPUT_CHARS))[0]
        for p in data
        if status.nodes.get(p) and status.nodes[p].state in ("succeeded", "cached")
    }
    entries = await in_thread(lambda: list(handle.logs(name)))
    out["logs"] = [_log_json(e) for e in entries[-200:]]
    return JSONResponse(out)


def _preview(handle: Run, name: str, chars: int = PREVIEW_CHARS) -> tuple[str | None, bool]:
    """The start of ``name``'s output as JSON, and whether it was cut; (None, False) when
    it has none. An output kept in the object store is read no further than the preview."""
    try:
        blob = handle.stored(name)
        if is_ref(blob) and handle.plan().serializer == "json":
            ref = ref_of(blob)  # type: ignore[arg-type]
            return head(ref, chars).decode(errors="replace"), ref.size > chars
        text = json.dumps(handle.result(name), default=str)
    except (NoResult, DagrqError):
        return None, False
    return text[:chars], len(text) > chars


def _log_json(entry: Any) -> dict[str, Any]:
    return {
        "id": entry.id,
        "attempt": entry.attempt,
        "stream": entry.stream,
        "line": entry.line,
        "level": entry.level,
    }


async def node_logs(request: Request) -> Response:
    """``/api/runs/<id>/nodes/<node>/logs?after=<entry id>``: the node's log lines after that
    entry as server-sent events, then each new one as it is written (one blocking ``XREAD``
    per few seconds while nothing comes), for as long as the page follows it."""
    if (denied := guard(request)) is not None:
        return denied
    connection = request.app.state.connection
    run_id, name = request.path_params["run_id"], request.path_params["node"]

    def read(after: str) -> list[tuple[str, dict[str, Any]]]:
        lines = nodelogs.wait_after(connection, run_id, name, after, BLOCK_MS)
        return [(e.id, _log_json(e)) for e in lines]

    return _stream(request, read)


async def node_action(request: Request) -> Response:
    """``POST /api/runs/<id>/nodes/<node>/clear`` (run it and everything downstream again) or
    ``/mark`` with ``{"outcome": "succeeded"|"skipped", "reason", "output"}`` (with the page's
    token): ``Run.clear`` / ``Run.mark``; ``{"state"}`` of the run after, or ``{"error"}``."""
    if (denied := guard(request, action=True)) is not None:
        return denied
    run_id, name = request.path_params["run_id"], request.path_params["node"]
    verb = request.path_params["verb"]
    try:
        body = await request.json() if verb == "mark" else {}
        handle = await in_thread(Run.fetch, run_id, request.app.state.connection)
        if verb == "clear":
            after = await in_thread(handle.clear, name)
        elif verb == "mark":
            outcome, reason = str(body.get("outcome", "")), str(body.get("reason", ""))
            after = await in_thread(handle.mark, name, outcome, reason, body.get("output"))
        else:
            return JSONResponse({"error": f"no action {verb!r} on a node"}, status_code=404)
    except RunNotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except (DagrqError, ValueError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    return JSONResponse({"state": after.state})


def _signal_form(handle: Run, name: str) -> dict[str, Any] | None:
    """A wait node's form: its value's type and JSON schema (None for any other node)."""
    spec = handle.plan().specs.get(name)
    if spec is None or not spec.wait:
        return None
    waiting = Waiting.parse(spec.wait)
    if waiting.kind != "signal":
        return None
    return {"type": waiting.type_name, "schema": json.loads(waiting.form or "{}")}


async def signal(request: Request) -> Response:
    """``POST /api/runs/<id>/nodes/<node>/signal`` with ``{"value": ...}`` (with the page's
    token): ``Run.signal``; 200 ``{"answer"}``, or 422 ``{"error"}`` for a refused value."""
    if (denied := guard(request, action=True)) is not None:
        return denied
    run_id, name = request.path_params["run_id"], request.path_params["node"]
    try:
        body = await request.json()
        handle = await in_thread(Run.fetch, run_id, request.app.state.connection)
        answer = await in_thread(lambda: handle.signal(name, body.get("value"), wait_s=10.0))
    except RunNotFound as exc:
        return JSONResponse({"error": str(exc)}, status_code=404)
    except (DagrqError, ValueError, AttributeError) as exc:
        return JSONResponse({"error": str(exc)}, status_code=422)
    return JSONResponse({"answer": answer})


async def action(request: Request) -> Response:
    """``POST /api/runs/<id>/cancel|resume`` (with the page's token)."""
    if (denied := guard(request, action=True)) is not None:
        return denied
    run_id, verb = request.path_params["run_id"], request.path_params["verb"]
    try:
        handle = await in_thread(Run.fetch, run_id, request.app.state.connection)
        after = await in_thread(handle.cancel if verb == "cancel" else handle.resume)
    except DagrqError as exc:
        return JSONResponse({"error": str(exc)}, status_code=409)
    return JSONResponse({"state": after.state})


async def events(request: Request) -> Response:
    """``/api/runs/<id>/events``: the run's state changes as server-sent events, each with its
    ``id:`` (a reconnecting browser sends it back as ``Last-Event-ID`` and gets only what it
    has not seen; ``?after=`` starts after an event the page already drew), and a comment line
    as a heartbeat every few seconds while nothing happens, for as long as the page is open."""
    if (denied := guard(request)) is not None:
        return denied
    run_id = request.path_params["run_id"]
    store = RunStore(for_run(request.app.state.connection, run_id), run_id)

    def read(after: str) -> list[tuple[str, dict[str, Any]]]:
        return [(e.pop("id"), e) for e in store.read_events(after, BLOCK_MS)]

    return _stream(request, read)


def _stream(request: Request, read: Callable[[str], list[tuple[str, Any]]]) -> Response:
    """Server-sent events of what ``read(after id)`` returns (``(id, payload)`` pairs, after
    blocking up to :data:`BLOCK_MS` for one), from the ``Last-Event-ID`` or ``?after=`` the
    browser gives; a heartbeat comment when nothing came, a note while Redis is away."""
    start = request.headers.get("last-event-id") or request.query_params.get("after") or "0-0"

    async def stream() -> Any:
        last = start
        yield f"retry: {RETRY_MS}\n\n"
        while True:
            try:
                got = await in_thread(read, last)
            except RedisError:  # Redis away: say so to the page, and try again
                yield ": redis unreachable\n\n"
                await anyio.sleep(1)
                continue
            if not got:
                yield ": idle\n\n"  # the heartbeat: keeps proxies from closing the stream
            for last, payload in got:
                yield f"id: {last}\ndata: {json.dumps(payload)}\n\n"

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)
