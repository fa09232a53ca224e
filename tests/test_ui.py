"""`dagrq ui` in a real headless browser (Debian's chromium driven by playwright), against a
real Redis with real runs and real workers."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis

from dagrq import Run

from .helpers import Workers, dagrq, pipeline, ui_on, wait_for


def _state(page: Any, node: str) -> str:
    return str(page.eval_on_selector(f"#node-{node}", "g => g.dataset.state"))


def test_runs_list_run_page_live_colours_cancel_and_resume(
    conn: redis.Redis, workers: Workers, ui: str, browser: Any
) -> None:
    from tests.pipelines.uiflow import dag

    live, other = dag.submit(conn, run_name="watched"), dag.submit(conn)
    workers.start(pipeline("uiflow"), 2)
    page = browser.new_page()

    page.goto(ui + "/runs")
    for run in (live, other):
        page.wait_for_selector(f'tr[data-run="{run.id}"]', timeout=15_000)
    assert "watched" in page.inner_text("#runs")

    page.goto(f"{ui}/runs/{live.id}")
    for node in ("start", "gate", "end"):
        label = page.eval_on_selector(f"#node-{node} text.name", "t => t.textContent")
        assert label == node
    page.wait_for_function(
        "document.getElementById('node-gate').dataset.state === 'running'", timeout=30_000
    )
    assert _state(page, "end") == "pending"
    conn.set(f"test:gate:{live.id}", 1)  # gate succeeds while the page is open
    page.wait_for_function(
        "document.getElementById('node-end').dataset.state === 'succeeded'", timeout=30_000
    )
    fill = page.eval_on_selector("#node-gate rect", "r => r.getAttribute('fill')")
    assert fill == "#009E73"  # succeeded's colour, without a reload
    assert live.wait(timeout=30).state == "succeeded"

    page.click("#node-gate")
    page.wait_for_selector("#panelnode", timeout=10_000)
    panel = page.inner_text("#panel")
    assert "succeeded" in panel and "gate opened" in panel and "2" in panel

    page.goto(f"{ui}/runs/{other.id}")
    page.wait_for_function(
        "document.getElementById('node-gate').dataset.state === 'running'", timeout=30_000
    )
    page.click("#cancel")
    page.wait_for_function(
        "document.getElementById('runstate').textContent.includes('canceled')", timeout=30_000
    )
    assert Run.fetch(other.id, conn).status().state == "canceled"
    page.click("#resume")
    page.wait_for_function(
        "document.getElementById('runstate').textContent.includes('running')", timeout=30_000
    )
    conn.set(f"test:gate:{other.id}", 1)
    assert Run.fetch(other.id, conn).wait(timeout=60).state == "succeeded"
    page.close()


def test_a_dag_page_lists_its_schedules_with_their_last_run_and_next_fires(
    conn: redis.Redis, ui: str, workers: Workers
) -> None:
    from dagrq.store import schedules as stored

    workers.start(pipeline("scheduled", "every2s"), 1)
    wait_for(lambda: stored.state(conn, "t_every2s:fast").last_run, 20, "a first run")
    html = urllib.request.urlopen(f"{ui}/dags/t_every2s").read().decode()
    assert "<h2>schedules</h2>" in html and "cron &#39;*/2 * * * * *&#39; UTC" in html
    import re

    section = html.split("<h2>schedules</h2>")[1].split("</table>")[0]
    (linked,) = re.findall(r'href="/runs/([0-9a-f]{32})"', section)  # its last tick's run
    assert Run.fetch(linked, conn).status().trigger.startswith("schedule t_every2s:fast @ ")
    assert len(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", section)) >= 4  # last, next 3


def test_a_dag_page_and_the_json_api(conn: redis.Redis, ui: str, browser: Any) -> None:
    from tests.pipelines.uiflow import dag

    run = dag.submit(conn)
    page = browser.new_page()
    page.goto(f"{ui}/dags/uiflow")
    assert "critical path" in page.inner_text("pre")
    assert page.get_attribute("#grid thead a.sq", "data-run") == run.id
    import json

    listed = json.loads(urllib.request.urlopen(f"{ui}/api/runs").read())
    assert listed[0]["id"] == run.id and listed[0]["created_at"].endswith("Z")
    node = json.loads(urllib.request.urlopen(f"{ui}/api/runs/{run.id}/nodes/start").read())
    assert node["state"] == "queued" and node["why"]["decision"] == "fire"
    with pytest.raises(urllib.error.HTTPError) as denied:  # an action without the token
        urllib.request.urlopen(
            urllib.request.Request(f"{ui}/api/runs/{run.id}/cancel", method="POST")
        )
    assert denied.value.code == 403
    assert Run.fetch(run.id, conn).status().state == "running"
    page.close()


def test_a_non_loopback_bind_needs_a_token(redis_url: str) -> None:
    out = dagrq("ui", "--host", "0.0.0.0", "--url", redis_url, timeout=30)
    assert out.returncode == 2
    assert "give --token" in out.stderr and "Traceback" not in out.stderr


def test_an_open_page_on_a_1000_node_run_costs_a_few_commands_a_second(
    browser: Any, tmp_path: Path
) -> None:
    from dagrq.embedded import Embedded

    server = Embedded(tmp_path / "redis", persist=False)  # a server no one else talks to
    try:
        with ui_on(server.url, tmp_path / "ui.log") as ui:
            _measure_open_page(redis.Redis.from_url(server.url), ui, browser, tmp_path)
    finally:
        server.close(force=True)


def _measure_open_page(conn: redis.Redis, ui: str, browser: Any, tmp_path: Path) -> None:
    source = tmp_path / "wide.py"
    source.write_text(
        "from dagrq import DAG\n"
        "dag = DAG('wide')\n"
        "def root() -> int:\n    return 1\n"
        "dag.node(root)\n"
        + "".join(
            f"def n{i}(root: int) -> int:\n    return root\ndag.node(n{i})\n" for i in range(998)
        )
        + f"def sink({', '.join(f'n{i}: int' for i in range(998))}) -> int:\n    return 1\n"
        "dag.node(sink)\n"
    )
    from dagrq import loader

    dag = loader.load(f"{source}:dag")
    run = dag.submit(conn)
    assert len(run.status().nodes) == 1000
    page = browser.new_page(viewport={"width": 1400, "height": 800})
    shown_ms = _render_ms(page, f"{ui}/runs/{run.id}")
    print(f"a 1,000-node run page: drawn {shown_ms:.0f} ms after it was asked for")
    assert page.eval_on_selector_all("g.node", "els => els.length") == 1000
    reading = lambda: any(c.get("cmd") == "xread" for c in conn.client_list())  # noqa: E731
    wait_for(reading, 30, "the page's event stream open (a blocked XREAD)")
    before = conn.info("commandstats")
    time.sleep(10)  # the measurement's window
    after = conn.info("commandstats")
    calls = {k: v["calls"] - before.get(k, {"calls": 0})["calls"] for k, v in after.items()}
    calls.pop("cmdstat_info", None)  # our own
    per_s = sum(calls.values()) / 10
    print(f"an open page on a 1,000-node run, nothing changing: {per_s:.1f} commands/s")
    assert per_s <= 3
    _grid_of_500_runs(conn, ui, page)
    page.close()


def _render_ms(page: Any, url: str) -> float:
    """Milliseconds from asking for ``url`` to the first frame drawn after it loaded (the
    server's answer, parsing, layout and paint: what a person waits for)."""
    page.goto(url, wait_until="load", timeout=60_000)
    return float(
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => r(performance.now())))")
    )


def _grid_of_500_runs(conn: redis.Redis, ui: str, page: Any) -> None:
    """A grid of 500 runs draws in one page; the runs list pages through them."""
    from tests.pipelines.webview import dag

    runs = [dag.submit(conn, run_name=f"n{i}") for i in range(500)]
    shown_ms = _render_ms(page, f"{ui}/dags/t_web?runs=500")
    print(f"a grid of 500 runs x 5 nodes: drawn {shown_ms:.0f} ms after it was asked for")
    assert page.eval_on_selector_all("#grid a.cell", "els => els.length") == 500 * 5
    page.goto(f"{ui}/runs?dag=t_web&page=2")  # newest first, 50 a page
    listed = page.eval_on_selector_all("tr[data-run]", "els => els.map(e => e.dataset.run)")
    assert listed == [r.id for r in runs[::-1][50:100]]
    assert page.is_visible("#newer") and page.is_visible("#older")


def _sse(url: str, seconds: float, last_id: str | None = None) -> tuple[list[str], int]:
    """Read a server-sent-event stream for ``seconds``: the ids of its events, and how many
    heartbeats (comment lines) came."""
    request = urllib.request.Request(url, headers={"Last-Event-ID": last_id} if last_id else {})
    ids, beats = [], 0
    deadline = time.monotonic() + seconds
    with urllib.request.urlopen(request, timeout=10) as stream:
        while time.monotonic() < deadline:
            line = stream.readline().decode()
            assert line, "the stream closed"
            if line.startswith("id: "):
                ids.append(line[4:].strip())
            elif line.startswith(":"):
                beats += 1
    return ids, beats


def test_an_idle_runs_event_stream_stays_open_and_resumes_after_the_last_event_seen(
    conn: redis.Redis, ui: str, tmp_path: Path
) -> None:
    """An open stream on a run where nothing happens stays open a minute (heartbeats, no
    server error); a reconnect with Last-Event-ID gets only what came after."""
    from tests.pipelines.uiflow import dag

    run = dag.submit(conn)  # no worker: after its first events, nothing happens
    url = f"{ui}/api/runs/{run.id}/events"
    seen, beats = _sse(url, 60)
    assert seen and beats >= 10, (seen, beats)
    log = (tmp_path / "ui.log").read_text()
    assert "Traceback" not in log and "ERROR" not in log, log[-3000:]
    Run.fetch(run.id, conn).cancel()  # new events after those seen
    again, _ = _sse(url, 5, last_id=seen[-1])
    assert again and not set(again) & set(seen)  # nothing replayed


def test_a_wait_node_is_signalled_from_its_panel(
    conn: redis.Redis, workers: Workers, ui: str, browser: Any
) -> None:
    """The panel of a waiting wait node says what it waits for and has a form from its type:
    a bad value is refused with the type's message, approve ends it (docs/waits.md)."""
    from tests.pipelines.waiting import approval

    run = approval.submit(conn)
    workers.start(pipeline("waiting", "approval"), 1)
    page = browser.new_page()
    page.goto(f"{ui}/runs/{run.id}")
    page.wait_for_function(
        "document.getElementById('node-approve').dataset.state === 'waiting'", timeout=30_000
    )
    page.click("#node-approve")
    page.wait_for_selector("#signalform", timeout=10_000)
    assert "signal approve (type Approval)" in page.inner_text("#waitingfor")
    page.fill("#signalvalue", '{"approved": "yes please"}')
    page.click("#signalform button[type=submit]")
    page.wait_for_function(
        "document.getElementById('signalresult').textContent.includes('refused')",
        timeout=15_000,
    )
    assert "Input should be a valid boolean" in page.inner_text("#signalresult")
    page.fill("#signalvalue", '{"approved": false, "by": "web"}')
    page.click('#signalform button:has-text("approve")')
    assert run.wait(timeout=30).state == "succeeded"
    page.wait_for_function(
        "document.getElementById('panelstate').textContent === 'succeeded'", timeout=15_000
    )
    assert run.result("payout") == "42 paid, approved by web"
    page.close()
