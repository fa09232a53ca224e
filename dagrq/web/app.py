"""``dagrq ui``: a live web view of DAGs, runs and workers, read from Redis alone (Starlette
+ uvicorn, server-rendered HTML, a little JavaScript, no build step).

Pages (:mod:`dagrq.web.overview`, :mod:`dagrq.web.pages`, HTML from ``dagrq/web/templates``):
``/`` (every DAG with its last runs, success rate, median duration, schedules, pools),
``/dags/<name>`` (its grid: runs by node), ``/runs`` (runs with filters and pages),
``/runs/<id>`` (the DAG drawn in layers, repainted live from the run's event stream over
server-sent events; a timeline; a node's panel with its live log and actions),
``/workers``. JSON (:mod:`dagrq.web.api`): ``/api/runs``, ``/api/runs/<id>``,
``/api/runs/<id>/nodes/<node>`` (the CLI's ``--json`` shapes), ``/api/runs/<id>/events`` and
``/api/runs/<id>/nodes/<node>/logs`` (event streams); POST ``/api/runs/<id>/cancel|resume``,
``/api/runs/<id>/nodes/<node>/clear|mark|signal``; ``/metrics`` (Prometheus).

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
import time
from datetime import datetime
from importlib import resources
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..model.layout import DARK
from ..model.shapes import iso
from ..model.status import STATE_COLORS, STATE_GLYPHS
from ..model.words import ago, ahead, seconds
from . import api, overview, pages
from .access import guard

#: what ``/static/<name>`` serves (no build step), and as what
STATIC = {"run.js": "text/javascript", "runs.js": "text/javascript", "style.css": "text/css"}


def create_app(
    connection: Any, token: str | None = None, *, require_token: bool = False
) -> Starlette:
    """The ASGI app over ``connection``. ``token`` guards actions (a random one when None);
    with ``require_token`` every request must carry it."""
    routes = [
        Route("/", overview.dags_page),
        Route("/runs", pages.runs_page),
        Route("/runs/{run_id}", pages.run_page),
        Route("/dags/{name}", overview.dag_page),
        Route("/workers", overview.workers_page),
        Route("/static/{name}", static),
        Route("/api/runs", api.runs),
        Route("/api/pools", api.pools),
        Route("/metrics", api.metrics),
        Route("/api/runs/{run_id}", api.run),
        Route("/api/runs/{run_id}/nodes/{node}", api.node),
        Route("/api/runs/{run_id}/events", api.events),
        Route("/api/runs/{run_id}/nodes/{node}/logs", api.node_logs),
        Route("/api/runs/{run_id}/nodes/{node}/signal", api.signal, methods=["POST"]),
        Route("/api/runs/{run_id}/nodes/{node}/{verb:str}", api.node_action, methods=["POST"]),
        Route("/api/runs/{run_id}/{verb:str}", api.action, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.connection = connection
    app.state.secret = token or secrets.token_urlsafe(24)
    app.state.require_token = require_token
    templates = Jinja2Templates(directory=str(resources.files("dagrq.web") / "templates"))
    env = templates.env
    env.globals.update(
        colors=STATE_COLORS,
        glyphs=STATE_GLYPHS,
        ink={s: "#fff" if s in DARK else "#111" for s in STATE_COLORS},
    )
    env.filters.update(
        ago=ago,
        since=lambda ts: seconds(max(0.0, time.time() - ts)),
        took=seconds,
        iso=iso,
        fromiso=lambda text: datetime.fromisoformat(text).timestamp(),
        ahead=ahead,
    )
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
