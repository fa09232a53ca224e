"""Seeing DAGs and runs: DOT and Mermaid (parsed for real), the event stream, and the CLI
around them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pydot
import pytest
import redis

from dagrq import RunFailed, loader
from dagrq.model.status import STATE_COLORS

from .helpers import Workers, pipeline

orders = loader.load(pipeline("orders"))

ROOT = Path(__file__).resolve().parents[1]


def parse(text: str) -> pydot.Dot:
    graphs = pydot.graph_from_dot_data(text)
    assert graphs and len(graphs) == 1
    return graphs[0]


def attrs(graph: pydot.Dot) -> dict[str, dict[str, str]]:
    return {
        n.get_name().strip('"'): n.get_attributes()
        for n in graph.get_nodes()
        if n.get_name() not in ("node", "edge", "graph")
    }


def edges(graph: pydot.Dot) -> dict[tuple[str, str], dict[str, str]]:
    return {
        (e.get_source().strip('"'), e.get_destination().strip('"')): e.get_attributes()
        for e in graph.get_edges()
    }


def test_dot_marks_joins_maps_order_edges_and_inputs() -> None:
    g = parse(orders.to_dot())
    nodes, links = attrs(g), edges(g)
    assert {"fetch", "totals", "fraud", "report", "notify"} <= set(nodes)
    assert nodes["report"].get("peripheries") == "2"  # the join
    assert "peripheries" not in nodes["totals"]
    assert links[("report", "notify")].get("style") == "dashed"  # after=
    assert "style" not in links[("fetch", "totals")]
    assert ("param:day", "fetch") in links and links[("param:day", "fetch")]["style"] == "dotted"
    maps = parse(loader.load(pipeline("maps")).to_dot())
    assert attrs(maps)["parse"]["shape"] == "box3d"
    assert attrs(maps)["total"]["peripheries"] == "2"
    assert orders.to_dot() == orders.to_dot()  # deterministic


def test_mermaid_has_the_same_facts() -> None:
    text = orders.to_mermaid()
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert any(ln.strip().startswith('report[["report') for ln in lines)  # join shape
    assert "  report -.-> notify" in lines and "  fetch --> totals" in lines
    assert "  param_day --- fetch" in lines
    maps = loader.load(pipeline("maps")).to_mermaid()
    assert '  parse{{"parse' in maps


def test_a_run_colours_the_nodes_by_state(conn: redis.Redis, workers: Workers) -> None:
    dag = loader.load(pipeline("failing"))
    workers.start(pipeline("failing"), 1)
    run = dag.submit(conn)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    states = {n: s.state for n, s in run.status().nodes.items()}
    assert set(states.values()) == {"succeeded", "failed", "upstream_failed"}
    nodes = attrs(parse(dag.to_dot(run)))
    for name, state in states.items():
        assert nodes[name]["fillcolor"].strip('"') == STATE_COLORS[state], name
        assert state in nodes[name]["label"]
    mermaid = dag.to_mermaid(run).splitlines()
    for state in ("succeeded", "failed", "upstream_failed"):
        assert any(
            ln.startswith(f"  classDef {state} fill:{STATE_COLORS[state]}") for ln in mermaid
        )
    assert "  class boom failed" in mermaid and "  class after_boom upstream_failed" in mermaid


def test_events_stream_every_state_change(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    dag = loader.load(pipeline("failing"))
    workers.start(pipeline("failing"), 1)
    run = dag.submit(conn)
    seen = list(run.events(block_ms=200))  # follows until the run's own final entry
    assert seen[0]["node"] == "" and seen[0]["state"] == "running"
    assert seen[-1] == {**seen[-1], "node": "", "state": "failed"}
    by_node: dict[str, list[str]] = {}
    for event in seen:
        by_node.setdefault(event["node"], []).append(event["state"])
    assert by_node["a"] == ["queued", "running", "succeeded"]
    assert by_node["boom"] == ["queued", "running", "failed"]
    assert by_node["after_boom"] == ["upstream_failed"]
    assert next(e for e in seen if e["state"] == "failed" and e["node"] == "boom")["error"] == (
        "ValueError: bad input 1"
    )
    out = subprocess.run(
        [sys.executable, "-m", "dagrq", "events", run.id, "--url", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    lines = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert [(e["node"], e["state"]) for e in lines] == [(e["node"], e["state"]) for e in seen]
    from datetime import datetime

    stamps = [datetime.fromisoformat(e["ts"]).timestamp() for e in lines]  # ISO, as docs/cli.md
    assert stamps == pytest.approx([float(e["ts"]) for e in seen], abs=1e-5)
    watch = subprocess.run(
        [sys.executable, "-m", "dagrq", "status", run.id, "--watch", "--url", redis_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert watch.returncode == 1 and "boom" in watch.stdout


def test_dot_command_writes_dot_mermaid_and_svg(tmp_path: Path) -> None:
    def dagrq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dagrq", *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )

    assert dagrq("dot", "examples/etl.py:dag", "-o", str(tmp_path / "g.dot")).returncode == 0
    parse((tmp_path / "g.dot").read_text())
    assert dagrq("dot", "examples/etl.py:dag", "-o", str(tmp_path / "g.mmd")).returncode == 0
    assert (tmp_path / "g.mmd").read_text().startswith("flowchart LR")
    if shutil.which("dot") is not None:  # CI installs Graphviz; elsewhere it is optional
        svg = dagrq("dot", "examples/etl.py:dag", "-o", str(tmp_path / "g.svg"))
        assert svg.returncode == 0, svg.stderr
        assert "<svg" in (tmp_path / "g.svg").read_text()
    no_graphviz = dagrq(
        "dot",
        "examples/etl.py:dag",
        "-o",
        str(tmp_path / "h.svg"),
        env={**os.environ, "PATH": str(Path(sys.executable).parent)},
    )
    assert no_graphviz.returncode == 2
    assert "needs Graphviz's `dot` on PATH" in no_graphviz.stderr
    plan = dagrq("plan", "examples/etl.py:dag")
    assert plan.returncode == 0 and "per join arrival: 14 waiting, 21" in plan.stdout


def test_branches_are_drawn_and_planned_distinctly() -> None:
    dag = loader.load(pipeline("branching"))
    nodes = attrs(parse(dag.to_dot()))
    assert nodes["route"]["shape"] == "diamond" and "branch" in nodes["route"]["label"]
    assert '  route{"route' in dag.to_mermaid()
    from dagrq.model.preflight import preflight

    lines = preflight(dag.plan, dag.param_types).lines()
    assert "branches (1):" in lines and any("route" in ln and "big, small" in ln for ln in lines)
