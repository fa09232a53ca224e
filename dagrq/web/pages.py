"""The HTML pages of ``dagrq ui`` about runs: the runs list and a run (templates in
``dagrq/web/templates``). Both are rendered by the server, so they read without JavaScript;
a little script keeps them live."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import Response

from ..client import Run
from ..errors import RunNotFound
from ..model.layout import to_svg
from ..model.status import FINAL_NODE_STATES, RUN_FILTERS, STATE_COLORS
from ..store import index, views
from ..store.runs import RunStore
from .access import guard, in_thread, page

#: runs per page of the runs list
PAGE_SIZE = 50
#: the filters of the runs list, as query parameters
FILTERS = ("dag", "state", "name", "tag", "trigger", "q")
#: the kinds of trigger a run can have (the first word of its ``trigger``)
TRIGGERS = ("manual", "schedule", "backfill", "event", "child")


async def runs_page(request: Request) -> Response:
    """``/runs``: runs newest first, filtered by DAG, state, name, tag, trigger and id
    prefix, a page at a time (``?page=``); with ``?fragment=1``, only the list (what the
    page's script swaps in), and with ``newest``/``live`` too, 204 when nothing it shows
    moved on (:func:`dagrq.store.index.changed`)."""
    if (denied := guard(request)) is not None:
        return denied
    params = request.query_params
    q = {k: params.get(k, "") for k in FILTERS}
    page_no = int(params["page"]) if params.get("page", "").isdigit() else 1
    offset = max(0, page_no - 1) * PAGE_SIZE
    connection = request.app.state.connection
    if params.get("fragment") and "newest" in params:
        live = dict(x.split(":", 1) for x in params.get("live", "").split(",") if ":" in x)
        stale = await in_thread(index.changed, connection, q["dag"] or None, params["newest"], live)
        if not stale:
            return Response(status_code=204)
    try:
        found, head = await in_thread(_runs, connection, q, offset)
    except ValueError as exc:
        return page(request, "message.html", "bad filter", message=str(exc), status_code=400)
    shown = {k: v for k, v in q.items() if v}
    context = {
        "runs": found[:PAGE_SIZE],
        "head": head,
        "q": q,
        "offset": offset,
        "filtered": bool(shown),
        "counts": sorted(Counter(r.state for r in found[:PAGE_SIZE]).items()),
        "prev_url": f"/runs?{urlencode({**shown, 'page': page_no - 1})}" if offset else None,
        "next_url": f"/runs?{urlencode({**shown, 'page': page_no + 1})}"
        if len(found) > PAGE_SIZE
        else None,
        "fragment_url": f"/runs?{urlencode({**shown, 'page': page_no, 'fragment': 1})}",
    }
    if params.get("fragment"):
        return page(request, "runrows.html", "runs", **context)
    dags = await in_thread(views.dag_names, connection)
    return page(
        request,
        "runs.html",
        "runs",
        nav="runs",
        states=RUN_FILTERS,
        triggers=TRIGGERS,
        dags=dags,
        **context,
    )


def _runs(connection: Any, q: dict[str, str], offset: int) -> tuple[list[Any], str | None]:
    """A page of runs (one more than a page, to know whether there is a next one) and the
    index's newest run when it was read."""
    head = index.head(connection, q["dag"] or None)
    found = Run.list(
        connection,
        dag=q["dag"] or None,
        state=q["state"] or None,
        tag=q["tag"] or None,
        limit=PAGE_SIZE + 1,
        name=q["name"] or None,
        trigger=q["trigger"] or None,
        prefix=q["q"].strip().lower() or None,
        offset=offset,
    )
    return found, head


async def run_page(request: Request) -> Response:
    """``/runs/<id>``: one run, its DAG repainted live (``run.js``); ``?node=`` opens that
    node's panel."""
    if (denied := guard(request)) is not None:
        return denied
    run_id = request.path_params["run_id"]
    connection = request.app.state.connection
    try:
        run = await in_thread(Run.fetch, run_id, connection)
        seen = await in_thread(RunStore(run.connection, run_id).last_event_id)  # before the status
        status = await in_thread(run.status)
        plan = await in_thread(run.plan)
    except RunNotFound as exc:
        return page(request, "message.html", "not found", message=str(exc), status_code=404)
    counts = Counter(s.state for s in status.nodes.values())
    done = sum(n for s, n in counts.items() if s in FINAL_NODE_STATES)
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in status.params.items())
    node = request.query_params.get("node")
    return page(
        request,
        "run.html",
        f"run {run_id[:12]}",
        nav="runs",
        run_id=run_id,
        status=status,
        params=params,
        done=done,
        total=max(1, len(status.nodes)),
        counts=[(s, counts[s]) for s in STATE_COLORS if counts[s]],
        svg=to_svg(plan, nodes=status.nodes),
        open_node=node if node in status.nodes else None,
        seen=seen,
    )
