"""The HTML pages of ``dagrq ui``: the runs list, a run, a DAG (templates in
``dagrq/web/templates``)."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..client import Run
from ..errors import RunNotFound
from ..model.layout import to_svg
from ..model.preflight import preflight
from ..model.shapes import iso
from ..model.status import FINAL_NODE_STATES, RUN_FILTERS
from .access import guard, in_thread, page


async def index(request: Request) -> Response:
    """``/``: the runs, newest first, with filters (the table is filled by ``runs.js``)."""
    if (denied := guard(request)) is not None:
        return denied
    q = request.query_params
    return page(
        request,
        "runs.html",
        "dagrq runs",
        dag=q.get("dag", ""),
        chosen=q.get("state"),
        states=RUN_FILTERS,
    )


async def run_page(request: Request) -> Response:
    """``/runs/<id>``: one run, its DAG recoloured live (``run.js``)."""
    if (denied := guard(request)) is not None:
        return denied
    run_id = request.path_params["run_id"]
    connection = request.app.state.connection
    try:
        run = await in_thread(Run.fetch, run_id, connection)
        status = await in_thread(run.status)
        plan = await in_thread(run.plan)
    except RunNotFound as exc:
        return page(request, "message.html", "not found", message=str(exc))
    states = {n: s.state for n, s in status.nodes.items()}
    done = sum(1 for s in states.values() if s in FINAL_NODE_STATES)
    params = ", ".join(f"{k}={json.dumps(v)}" for k, v in status.params.items())
    return page(
        request,
        "run.html",
        f"run {run_id}",
        run_id=run_id,
        status=status,
        started=iso(status.created_at),
        params=params,
        done=done,
        total=len(states),
        share=100 * done / max(1, len(states)),
        svg=to_svg(plan, states),
    )


async def dag_page(request: Request) -> Response:
    """``/dags/<name>``: a DAG's structure, cost report and recent runs."""
    if (denied := guard(request)) is not None:
        return denied
    name = request.path_params["name"]
    connection = request.app.state.connection
    runs = await in_thread(lambda: Run.list(connection, dag=name, limit=20))
    timed = await in_thread(lambda: _schedules_of(connection, name))
    if not runs:
        return page(request, "dag.html", name, name=name, runs=[], schedules=timed)
    plan = await in_thread(lambda: Run.fetch(runs[0].id, connection).plan())
    limits = await in_thread(lambda: _limits_of(connection, plan))
    rows = [{**r.model_dump(), "started": iso(r.created_at)} for r in runs]
    return page(
        request,
        "dag.html",
        f"DAG {name}",
        name=name,
        runs=rows,
        svg=to_svg(plan),
        report="\n".join(preflight(plan, {}).lines()),
        schedules=timed,
        limits=limits,
    )


def _limits_of(connection: Any, plan: Any) -> list[dict[str, Any]]:
    """The pools, concurrency limits and rate limits ``plan``'s nodes use, as in use now."""
    from .. import pools as api

    pools = {s.pool for s in plan.specs.values() if s.pool}
    rates = {s.rate_limit.split(":")[0] for s in plan.specs.values() if s.rate_limit}
    mine = f"{plan.dag}."
    return [
        x.to_dict()
        for x in api.list(connection, pools)
        if (x.kind == "pool" and x.name in pools)
        or x.name.startswith(mine)
        or (x.kind == "rate" and x.name in rates)
    ]


def _schedules_of(connection: Any, dag: str) -> list[dict[str, Any]]:
    """The schedules of ``dag`` a leader has served, with their state and next fires."""
    from ..store import schedules as stored

    return stored.listing(connection, [s for s in stored.rebuilt(connection) if s.dag == dag])
