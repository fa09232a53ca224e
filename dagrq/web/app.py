"""``dagrq ui``: a live web view of runs, read from Redis alone (Starlette + uvicorn).

Pages (:mod:`dagrq.web.pages`, HTML from ``dagrq/web/templates``): ``/`` (runs, newest first,
filters, refreshed every few seconds), ``/runs/<id>`` (the DAG as SVG with live node colours
from the run's event stream over server-sent events, a progress bar, params, timings; a node's
details on click; cancel and resume buttons), ``/dags/<name>`` (structure, cost report, recent
runs). JSON (:mod:`dagrq.web.api`): ``/api/runs``, ``/api/runs/<id>``,
``/api/runs/<id>/nodes/<node>`` (the CLI's ``--json`` shapes), ``/api/runs/<id>/events``;
POST ``/api/runs/<id>/cancel|resume`` and ``/api/runs/<id>/nodes/<node>/signal``;
``/metrics`` (Prometheus, :mod:`dagrq.metrics`).

Safety: actions are POSTs that carry the page's token (``X-Dagrq-Token``); a bind other
than loopback needs ``--token`` and then every request carries it (``?token=`` once sets a
cookie). No page or response holds the Redis URL. An open run page costs one blocking
``XREAD`` per 4 s while nothing changes (its heartbeat), and a dropped stream resumes after the
last event the page saw (``Last-Event-ID``).

Handlers are module-level functions that read what they share from ``request.app.state``:
``connection``, ``secret`` (the token), ``require_token`` and ``templates``.
"""

from __future__ import annotations

import secrets
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..model.status import STATE_COLORS
from . import api, pages
from .access import guard

#: what ``/static/<name>`` serves (no build step), and as what
STATIC = {"run.js": "text/javascript", "runs.js": "text/javascript", "style.css": "text/css"}


def create_app(
    connection: Any, token: str | None = None, *, require_token: bool = False
) -> Starlette:
    """The ASGI app over ``connection``. ``token`` guards actions (a random one when None);
    with ``require_token`` every request must carry it."""
    routes = [
        Route("/", pages.index),
        Route("/runs/{run_id}", pages.run_page),
        Route("/dags/{name}", pages.dag_page),
        Route("/static/{name}", static),
        Route("/api/runs", api.runs),
        Route("/api/pools", api.pools),
        Route("/metrics", api.metrics),
        Route("/api/runs/{run_id}", api.run),
        Route("/api/runs/{run_id}/nodes/{node}", api.node),
        Route("/api/runs/{run_id}/events", api.events),
        Route("/api/runs/{run_id}/nodes/{node}/signal", api.signal, methods=["POST"]),
        Route("/api/runs/{run_id}/{verb:str}", api.action, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.connection = connection
    app.state.secret = token or secrets.token_urlsafe(24)
    app.state.require_token = require_token
    templates = Jinja2Templates(directory=str(resources.files("dagrq.web") / "templates"))
    templates.env.globals["colors"] = STATE_COLORS
    app.state.templates = templates
    return app


async def static(request: Request) -> Response:
    """A file of ``dagrq/web/static`` named in :data:`STATIC`."""
    if (denied := guard(request)) is not None:
        return denied
    name = request.path_params["name"]
    if name not in STATIC:
        return JSONResponse({"error": f"no static file {name!r}"}, status_code=404)
    text = (resources.files("dagrq.web") / "static" / name).read_text()
    return Response(text, media_type=STATIC[name])
