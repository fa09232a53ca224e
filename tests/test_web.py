"""The web view's pages and actions in a real headless browser (Debian's chromium driven by
playwright), on real runs run by real `dagrq worker` processes: the DAGs page, a DAG's grid
against `dagrq status --json`, the runs list (also without JavaScript), a run's graph,
timeline and node panel, re-running and marking nodes, a live log, the workers page.

With ``DAGRQ_UPDATE_SCREENSHOT=1`` the tests take docs/ui.md's screenshots again."""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
import urllib.request
from typing import Any

import redis

from dagrq import Run, RunFailed

from .helpers import ROOT, Workers, dagrq, pipeline

SHOTS = os.environ.get("DAGRQ_UPDATE_SCREENSHOT")


def _shot(page: Any, name: str, height: int = 620) -> None:
    """docs/<name>.png of ``page`` at 1400 px, when asked to take screenshots again."""
    if SHOTS:
        page.set_viewport_size({"width": 1400, "height": height})
        page.evaluate("window.scrollTo(0, 0)")
        page.screenshot(path=str(ROOT / "docs" / f"{name}.png"))


def _html(url: str) -> str:
    return urllib.request.urlopen(url, timeout=10).read().decode()


def _final(run: Run) -> str:
    """The state ``run`` ends in (failed ones too)."""
    with contextlib.suppress(RunFailed):
        run.wait(timeout=60)
    return run.status().state


def _ended(runs: list[Run]) -> dict[str, str]:
    return {r.id: _final(r) for r in runs}


def test_every_page_on_real_runs(
    conn: redis.Redis, workers: Workers, ui: str, browser: Any, redis_url: str
) -> None:
    from tests.pipelines.webview import dag

    runs = [dag.submit(conn, fail=i in (1, 3), run_name=f"r{i}") for i in range(5)]
    workers.start(pipeline("webview"), 2)
    states = _ended(runs)
    assert sorted(states.values()) == ["failed"] * 2 + ["succeeded"] * 3
    page = browser.new_page(viewport={"width": 1400, "height": 800})

    # the DAGs page: its last runs as squares, oldest first, and the success rate over them
    page.goto(ui + "/")
    squares = page.eval_on_selector_all(
        'tr[data-dag="t_web"] a.sq', "els => els.map(e => e.dataset.run)"
    )
    assert squares == [r.id for r in runs]
    assert "60%" in page.inner_text('tr[data-dag="t_web"]')
    _shot(page, "ui-dags", 360)

    # the grid: every cell is the state `dagrq status --json` gives (the map is one row)
    page.goto(ui + "/dags/t_web")
    cells = page.eval_on_selector_all(
        "#grid a.cell", "els => els.map(e => [e.dataset.run, e.dataset.node, e.dataset.state])"
    )
    assert len(cells) == 5 * 5
    for run in runs:
        out = dagrq("status", run.id, "--json", "--url", redis_url)
        told = {n: v["state"] for n, v in json.loads(out.stdout)["nodes"].items()}
        assert {n: s for r, n, s in cells if r == run.id} == told
    assert "items 3/3" in page.get_attribute(
        f'#grid a.cell[data-run="{runs[0].id}"][data-node="square"]', "title"
    )
    _shot(page, "ui-grid", 420)
    page.click(f'#grid a.cell[data-run="{runs[1].id}"][data-node="report"]')
    page.wait_for_selector("#panelnode", timeout=10_000)  # the cell opens that node's panel
    assert page.url.endswith(f"/runs/{runs[1].id}?node=report")
    assert page.inner_text("#panelwhy") == (
        "did not run: its parent check failed (rule all_success)"
    )

    _check_run_page(page, ui, runs[0], runs[1])
    _check_runs_list(page, ui, runs)

    page.goto(ui + "/workers")  # `dagrq workers` in the browser
    row = page.inner_text("#versions")
    assert re.search(r"t_web\s+\w+\s+2\s", row), row
    assert page.eval_on_selector_all("#workers tr[data-worker]", "els => els.length") >= 2
    _shot(page, "ui-workers", 480)
    page.close()


def _check_run_page(page: Any, ui: str, good: Run, bad: Run) -> None:
    """Legend, progress bar by outcome, actions offered by state, zoom, the timeline."""
    page.goto(f"{ui}/runs/{bad.id}")
    assert page.eval_on_selector_all(".legend .st", "els => els.length") == 10
    assert page.is_hidden("#cancel") and page.is_visible("#resume")  # no cancel on a failed run
    bar = page.eval_on_selector_all("#progress span", "els => els.map(e => e.dataset.state)")
    assert "failed" in bar and "upstream_failed" in bar
    page.goto(f"{ui}/runs/{good.id}")
    assert page.is_hidden("#cancel") and page.is_hidden("#resume")
    assert page.text_content("#node-square .detail") == "3/3 items"
    before = page.get_attribute("#dag", "viewBox")
    page.click("#zoomin")
    zoomed = page.get_attribute("#dag", "viewBox")
    assert zoomed != before
    box = page.query_selector("#graph").bounding_box()
    page.mouse.move(box["x"] + 10, box["y"] + 10)  # pan: drag the background
    page.mouse.down()
    page.mouse.move(box["x"] + 110, box["y"] + 60)
    page.mouse.up()
    assert page.get_attribute("#dag", "viewBox") != zoomed
    page.focus("#node-report")  # the keyboard reaches a node and opens its panel
    page.keyboard.press("Enter")
    page.wait_for_selector("#panelnode", timeout=10_000)
    assert "report: 5 from 3 items, talked" in page.inner_text("#logtail")
    assert page.inner_text("#output") == '"5/3"'
    _shot(page, "ui-run")
    page.keyboard.press("t")  # the timeline tab
    page.wait_for_selector("#timeline g.span", timeout=10_000)
    spans = page.eval_on_selector_all(
        "#timeline g.span",
        "els => els.map(e => [e.dataset.node, +e.dataset.start, +e.dataset.end, "
        "+e.dataset.queued])",
    )
    assert sorted(n for n, *_ in spans) == sorted(Run.fetch(good.id, good.connection).plan().specs)
    for node, start, end, queued in spans:
        assert 0 < queued <= start <= end, (node, queued, start, end)
    _shot(page, "ui-timeline", 420)


def _check_runs_list(page: Any, ui: str, runs: list[Run]) -> None:
    """Rendered by the server (no JavaScript needed), filters, id-prefix search."""
    html = _html(ui + "/runs")  # what a browser without JavaScript gets
    assert all(f'data-run="{r.id}"' in html for r in runs)
    assert html.index(runs[-1].id) < html.index(runs[0].id)  # newest first
    failed = re.findall(r'data-run="(\w+)" data-state="failed"', _html(ui + "/runs?state=failed"))
    assert sorted(failed) == sorted([runs[1].id, runs[3].id])
    named = re.findall(r'<tr data-run="(\w+)"', _html(ui + "/runs?name=r2&trigger=manual"))
    assert named == [runs[2].id]
    found = re.findall(r'<tr data-run="(\w+)"', _html(f"{ui}/runs?q={runs[4].id[:10]}"))
    assert found == [runs[4].id]
    page.goto(ui + "/runs?dag=t_web")
    assert "ago" in page.inner_text(f'tr[data-run="{runs[0].id}"]')  # relative times
    assert page.get_attribute(f'tr[data-run="{runs[0].id}"] time', "title").endswith("Z")
    _shot(page, "ui-runs", 400)


def test_node_actions_and_a_live_log(
    conn: redis.Redis, workers: Workers, ui: str, browser: Any
) -> None:
    """Re-run a failed node and what follows it from its panel; mark one skipped with a
    reason (kept in the run's events); follow a running node's log live."""
    from tests.pipelines.webview import dag

    broken, flaky, chatty = (
        dag.submit(conn, fail=True),
        dag.submit(conn, fail=True),
        dag.submit(conn, chatty=True),
    )
    workers.start(pipeline("webview"), 2)
    page = browser.new_page(viewport={"width": 1400, "height": 800})

    page.goto(f"{ui}/runs/{chatty.id}")
    page.wait_for_function(
        "document.getElementById('node-talk').dataset.state === 'running'", timeout=30_000
    )
    page.click("#node-talk")
    page.wait_for_selector("#logtail", timeout=10_000)
    token = f"line-{time.time_ns()}"
    conn.set(f"test:web:say:{chatty.id}", token)
    said = time.monotonic()
    page.wait_for_function(
        f"document.getElementById('logtail').textContent.includes('{token}')", timeout=2_000
    )
    print(f"a printed line reached the open panel in {time.monotonic() - said:.2f} s")
    assert page.inner_text("#panelstate") == "running"  # it came while the node ran
    conn.set(f"test:web:stop:{chatty.id}", 1)
    assert chatty.wait(timeout=30).state == "succeeded"

    assert _final(broken) == "failed"
    page.goto(f"{ui}/runs/{broken.id}")
    page.click("#node-check")
    page.wait_for_selector("#clear", timeout=10_000)
    assert page.inner_text("#panelwhy").startswith("failed after 1 attempt: ValueError")
    conn.set(f"test:web:fixed:{broken.id}", 1)
    page.click("#clear")
    page.wait_for_function(  # the POST answered: the run was reset
        "document.getElementById('actionresult').textContent.includes('check: run ')",
        timeout=15_000,
    )
    assert broken.wait(timeout=60).state == "succeeded"
    assert broken.result("report") == "5/3"
    page.wait_for_function(
        "document.getElementById('runstate').textContent.includes('succeeded')", timeout=15_000
    )

    assert _final(flaky) == "failed"
    page.goto(f"{ui}/runs/{flaky.id}?node=check")
    page.wait_for_selector("#markskipped", timeout=10_000)
    page.fill("#markreason", "known bad input")
    page.click("#markskipped")
    page.wait_for_function(
        "document.getElementById('actionresult').textContent.includes('check: run ')",
        timeout=15_000,
    )
    assert flaky.wait(timeout=60).state == "succeeded"  # report skipped: nothing failed
    status = flaky.status()
    assert status.nodes["check"].state == "skipped" and status.nodes["report"].state == "skipped"
    said_why = [e for e in flaky.events(follow=False) if e.get("node") == "check"]
    assert said_why[-1]["reason"] == "marked skipped by hand: known bad input"
    page.wait_for_function(
        "document.getElementById('panelwhy').textContent.includes('known bad input')",
        timeout=15_000,
    )
    page.close()
