"""``dagrq ui``: a live web view of runs, read from Redis alone (Starlette + uvicorn).

Pages: ``/`` (runs, newest first, filters, refreshed every few seconds), ``/runs/<id>`` (the
DAG as SVG with live node colours from the run's event stream over server-sent events, a
progress bar, params, timings; a node's details on click; cancel and resume buttons),
``/dags/<name>`` (structure, cost report, recent runs). JSON: ``/api/runs``,
``/api/runs/<id>``, ``/api/runs/<id>/nodes/<node>`` (the CLI's ``--json`` shapes).

Safety: actions are POSTs that carry the page's token (``X-Dagrq-Token``); a bind other
than loopback needs ``--token`` and then every request carries it (``?token=`` once sets a
cookie). No page or response holds the Redis URL. An open run page costs one blocking
``XREAD`` per 15 s while nothing changes.
"""

from __future__ import annotations

import hmac
import json
import secrets
from html import escape
from importlib import resources
from typing import Any

import anyio
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..client import Run
from ..errors import DagrqError, NoResult, RunNotFound
from ..model.layout import to_svg
from ..model.preflight import preflight
from ..model.shapes import explanation_json, iso, node_json, status_json, summary_json
from ..model.status import STATE_COLORS
from ..store.runs import RunStore

LOOPBACK = ("127.0.0.1", "localhost", "::1")
#: characters of an output shown on a node's panel
PREVIEW_CHARS = 2000
#: how long one blocking read of a run's events waits (the idle cost of an open run page)
BLOCK_MS = 15_000

STYLE = """
body{font-family:sans-serif;margin:1.5em;color:#222}a{color:#0072B2}
table{border-collapse:collapse}td,th{padding:.3em .7em;border-bottom:1px solid #ddd;text-align:left}
.state{padding:.1em .5em;border-radius:.6em;color:#000}#panel{border-left:3px solid #ccc;
padding-left:1em;margin-left:1em;min-width:28em;max-width:50em}pre{background:#f5f5f5;
padding:.5em;overflow:auto;max-height:20em}.bar{width:30em;height:1em;background:#eee}
.bar div{height:1em;background:#009E73}.row{display:flex;align-items:flex-start}
button{margin-right:.5em}
"""


def _page(title: str, body: str, token: str) -> HTMLResponse:
    return HTMLResponse(
        f'<!doctype html><html><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="dagrq-token" content="{escape(token)}"><style>{STYLE}</style></head>'
        f'<body><p><a href="/">runs</a></p>{body}</body></html>'
    )


def _badge(state: str) -> str:
    return (
        f'<span class="state" style="background:{STATE_COLORS.get(state, "#eee")}">'
        f"{escape(state)}</span>"
    )


def _script(name: str) -> str:
    """A script shipped in ``dagrq/web/static`` (no build step)."""
    return (resources.files("dagrq.web") / "static" / name).read_text()


def create_app(
    connection: Any, token: str | None = None, *, require_token: bool = False
) -> Starlette:
    """The ASGI app over ``connection``. ``token`` guards actions (a random one when None);
    with ``require_token`` every request must carry it."""
    secret = token or secrets.token_urlsafe(24)

    def allowed(request: Request, *, action: bool = False) -> bool:
        given = (
            request.headers.get("x-dagrq-token")
            or request.query_params.get("token")
            or request.cookies.get("dagrq_token")
            or ""
        )
        if action or require_token:
            return hmac.compare_digest(given, secret)
        return True

    def guard(request: Request, *, action: bool = False) -> Response | None:
        if allowed(request, action=action):
            return None
        return JSONResponse({"error": "token required"}, status_code=403)

    def remember(request: Request, response: Response) -> Response:
        if require_token and request.query_params.get("token") == secret:
            response.set_cookie("dagrq_token", secret, httponly=True, samesite="strict")
        return response

    async def sync(fn: Any, *args: Any) -> Any:
        return await anyio.to_thread.run_sync(lambda: fn(*args))

    def run_of(run_id: str) -> Run:
        return Run.fetch(run_id, connection)

    # ------------------------------------------------------------------ pages
    async def index(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        chosen = request.query_params.get("state")
        options = "".join(
            f"<option{' selected' if chosen == s else ''}>{s}</option>"
            for s in ("running", "succeeded", "failed", "canceled")
        )
        body = (
            "<h1>dagrq runs</h1><form>DAG <input name=dag value='"
            f"{escape(request.query_params.get('dag', ''))}'> state <select name=state>"
            f"<option></option>{options}</select> <button>filter</button></form>"
            "<p id=counts></p><table id=runs><thead><tr><th>run</th><th>dag</th><th>name</th>"
            "<th>state</th><th>started</th><th>duration</th><th>progress</th></tr></thead>"
            f"<tbody></tbody></table><script>{_script('runs.js')}</script>"
        )
        return remember(request, _page("dagrq runs", body, secret))

    async def run_page(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        run_id = request.path_params["run_id"]
        try:
            run = await sync(run_of, run_id)
            status = await sync(run.status)
            plan = await sync(run.plan)
        except RunNotFound as exc:
            return _page("not found", f"<p>{escape(str(exc))}</p>", secret)
        states = {n: s.state for n, s in status.nodes.items()}
        done = sum(1 for s in states.values() if s not in ("pending", "queued", "running"))
        params = ", ".join(f"{escape(k)}={escape(json.dumps(v))}" for k, v in status.params.items())
        share = 100 * done / max(1, len(states))
        body = (
            f"<h1>run {escape(run_id)}</h1><p>DAG <a href='/dags/{escape(status.dag)}'>"
            f"{escape(status.dag)}</a> · state <span id=runstate>{_badge(status.state)}</span>"
            f" · started {iso(status.created_at)} · params {params or 'none'}</p>"
            f"<div class=bar><div id=progress style='width:{share:.0f}%'>"
            f"</div></div><p id=progresstext>{done}/{len(states)} nodes ended</p>"
            "<p><button id=cancel>cancel run</button><button id=resume>resume run</button>"
            "<span id=actionresult></span></p>"
            f"<div class=row><div id=graph>{to_svg(plan, states)}</div><div id=panel>"
            "<p>click a node</p></div></div>"
            f"<script>const RUN={json.dumps(run_id)};const COLORS={json.dumps(STATE_COLORS)};"
            f"{_script('run.js')}</script>"
        )
        return remember(request, _page(f"run {run_id}", body, secret))

    async def dag_page(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        name = request.path_params["name"]
        runs = await sync(lambda: Run.list(connection, dag=name, limit=20))
        if not runs:
            return _page(name, f"<p>no runs of DAG {escape(name)} in this Redis</p>", secret)
        plan = await sync(lambda: run_of(runs[0].id).plan())
        report = "\n".join(preflight(plan, {}).lines())
        rows = "".join(
            f"<tr><td><a href='/runs/{r.id}'>{r.id}</a></td><td>{_badge(r.state)}</td>"
            f"<td>{iso(r.created_at)}</td><td>{r.done}/{r.total}</td></tr>"
            for r in runs
        )
        body = (
            f"<h1>DAG {escape(name)}</h1><div>{to_svg(plan)}</div><h2>plan</h2>"
            f"<pre>{escape(report)}</pre><h2>recent runs</h2><table>{rows}</table>"
        )
        return _page(f"DAG {name}", body, secret)

    # -------------------------------------------------------------------- API
    async def api_runs(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        q = request.query_params
        try:
            found = await sync(
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

    async def api_run(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        try:
            run = await sync(run_of, request.path_params["run_id"])
            return JSONResponse(status_json(await sync(run.status)))
        except RunNotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)

    async def api_node(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        run_id, node = request.path_params["run_id"], request.path_params["node"]
        try:
            run = await sync(run_of, run_id)
            status = await sync(run.status)
        except RunNotFound as exc:
            return JSONResponse({"error": str(exc)}, status_code=404)
        if node not in status.nodes:
            return JSONResponse({"error": f"run {run_id} has no node {node!r}"}, status_code=404)
        out = node_json(status.nodes[node])
        out["why"] = explanation_json(run.explain(node))
        try:
            value = await sync(run.result, node)
            text = json.dumps(value, default=str)
            out["output_preview"] = text[:PREVIEW_CHARS]
            out["output_truncated"] = len(text) > PREVIEW_CHARS
        except (NoResult, DagrqError):
            out["output_preview"] = None
        entries = await sync(lambda: list(run.logs(node)))
        out["logs"] = [
            {"attempt": e.attempt, "stream": e.stream, "line": e.line, "level": e.level}
            for e in entries[-200:]
        ]
        return JSONResponse(out)

    async def action(request: Request) -> Response:
        if (denied := guard(request, action=True)) is not None:
            return denied
        run_id, verb = request.path_params["run_id"], request.path_params["verb"]
        try:
            run = await sync(run_of, run_id)
            after = await sync(run.cancel if verb == "cancel" else run.resume)
        except DagrqError as exc:
            return JSONResponse({"error": str(exc)}, status_code=409)
        return JSONResponse({"state": after.state})

    async def events(request: Request) -> Response:
        if (denied := guard(request)) is not None:
            return denied
        store = RunStore(connection, request.path_params["run_id"])

        async def stream() -> Any:
            last = "0-0"
            while True:
                got = await sync(store.read_events, last, BLOCK_MS)
                if not got:
                    yield ": idle\n\n"  # keeps the connection; tells a closed one apart
                    continue
                for event in got:
                    last = event.pop("id")
                    yield f"data: {json.dumps(event)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    routes = [
        Route("/", index),
        Route("/runs/{run_id}", run_page),
        Route("/dags/{name}", dag_page),
        Route("/api/runs", api_runs),
        Route("/api/runs/{run_id}", api_run),
        Route("/api/runs/{run_id}/nodes/{node}", api_node),
        Route("/api/runs/{run_id}/events", events),
        Route("/api/runs/{run_id}/{verb:str}", action, methods=["POST"]),
    ]
    return Starlette(routes=routes)


def check_bind(host: str, token: str | None) -> None:
    """Refuse a non-loopback bind without a token.

    Raises:
        DagrqError: naming the host and the fix.
    """
    if host not in LOOPBACK and not token:
        raise DagrqError(
            f"--host {host} serves the UI beyond this machine: give --token (or "
            "DAGRQ_UI_TOKEN) so that only holders of it can see runs and act on them"
        )
