"""The HTML pages of ``dagrq ui`` about many runs at once: the DAGs page (the home), a
DAG's grid (runs by node) and the workers page; read in bulk by :mod:`dagrq.store.views`."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from ..model.layout import to_svg
from ..model.plan import Plan
from ..model.preflight import preflight
from ..model.shapes import recent_json
from ..store import views
from .access import guard, in_thread, page

#: runs per DAG on the DAGs page
PER_DAG = 25
#: runs a grid shows unless ``?runs=`` says otherwise, and the most it shows
GRID_RUNS, GRID_MAX = 25, 500


async def dags_page(request: Request) -> Response:
    """``/``: every DAG with its last runs as squares, success rate and median duration
    over them, how many are active, its schedules' next fire and the pools it uses."""
    if (denied := guard(request)) is not None:
        return denied
    rows = await in_thread(_dag_rows, request.app.state.connection)
    return page(request, "dags.html", "DAGs", nav="dags", rows=rows, per_dag=PER_DAG)


def _dag_rows(connection: Any) -> list[dict[str, Any]]:
    """What the DAGs page shows of each DAG."""
    from .. import pools
    from ..store import schedules as stored

    found = views.dags(connection, PER_DAG)
    declared = stored.rebuilt(connection)
    timed = stored.listing(connection, declared) if declared else []
    used = {s.pool for row in found if row.plan for s in row.plan.specs.values() if s.pool}
    slots = {p.name: p for p in pools.list(connection, used) if p.kind == "pool"} if used else {}
    out = []
    for row in found:
        mine = {s.pool for s in row.plan.specs.values() if s.pool} if row.plan else set()
        out.append(
            {
                "dag": row.dag,
                "runs": row.runs,
                "stats": recent_json(row.runs),
                "schedules": [s for s in timed if s["dag"] == row.dag],
                "pools": [slots[p].to_dict() for p in sorted(mine) if p in slots],
            }
        )
    return out


async def dag_page(request: Request) -> Response:
    """``/dags/<name>``: the grid of its newest runs (``?runs=``, up to 500) by node, each
    cell a link to that node's panel in that run; its schedules, the limits it uses, its
    structure and its plan report."""
    if (denied := guard(request)) is not None:
        return denied
    name = request.path_params["name"]
    try:
        shown = min(GRID_MAX, max(1, int(request.query_params.get("runs", GRID_RUNS))))
    except ValueError:
        shown = GRID_RUNS
    connection = request.app.state.connection
    grid = await in_thread(views.grid, connection, name, shown)
    timed = await in_thread(_schedules_of, connection, name)
    plan = await in_thread(views.plan_of, connection, grid.runs[-1].id) if grid.runs else None
    limits = await in_thread(_limits_of, connection, plan) if plan else []
    return page(
        request,
        "dag.html",
        f"DAG {name}",
        nav="dags",
        name=name,
        grid=grid,
        stats=recent_json(grid.runs),
        mapped={n for n, s in plan.specs.items() if s.map_over} if plan else set(),
        svg=to_svg(plan) if plan else None,
        report="\n".join(preflight(plan, {}).lines()) if plan else "",
        schedules=timed,
        limits=limits,
    )


def _limits_of(connection: Any, plan: Plan) -> list[dict[str, Any]]:
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


async def workers_page(request: Request) -> Response:
    """``/workers``: ``dagrq workers`` in the browser: each live worker process, the run and
    node it runs now and the DAG versions it serves; every queue's depth and oldest wait; each
    DAG version's processes and running runs."""
    if (denied := guard(request)) is not None:
        return denied
    fleet = await in_thread(views.workers, request.app.state.connection)
    return page(request, "workers.html", "workers", nav="workers", fleet=fleet)
