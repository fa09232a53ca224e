"""``dagrq plan``'s report (pure, from the plan) held against a real Redis: commands per
arrival exactly, per run within 25 %, and the graph figures."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import networkx as nx
import redis

from dagrq import loader
from dagrq.model.preflight import ARRIVAL_FIRING, ARRIVAL_WAITING, max_antichain, preflight

from .helpers import arrival_cost, commands

ROOT = Path(__file__).resolve().parents[1]


def test_max_parallelism_is_the_widest_antichain() -> None:
    assert max_antichain(nx.DiGraph([("a", "b"), ("a", "c"), ("a", "d"), ("b", "e")])) == 3
    assert max_antichain(nx.path_graph(5, create_using=nx.DiGraph)) == 1
    etl = loader.load("examples/etl.py:dag")
    report = preflight(etl.plan, etl.param_types)
    assert report.max_parallelism == 3
    assert report.critical_path[0].endswith("_csv") and report.critical_path[-1] == "report"
    assert report.joins["enriched"] == (3, "all_success")


def test_plan_commands_per_arrival_match_commandstats(quiet_conn: redis.Redis) -> None:
    # the plan's figure is computed from the scripts; measured here on a real Redis, exactly
    for width in (2, 10):
        assert arrival_cost(quiet_conn, width, "last") == ARRIVAL_FIRING
    for width in (3, 10):
        assert arrival_cost(quiet_conn, width, "waiting") == ARRIVAL_WAITING


def test_plan_commands_per_run_match_a_real_run_within_25_percent(
    quiet_conn: redis.Redis, quiet_url: str
) -> None:
    conn = quiet_conn  # a server of its own: other tests' workers would add their commands
    address = "examples/etl.py:dag"
    etl = loader.load(address)
    predicted = preflight(etl.plan, etl.param_types).commands["total_per_run"]
    conn.config_resetstat()
    run = etl.submit(conn, rows=50)
    done = subprocess.run(
        [sys.executable, "-m", "dagrq", "worker", address, "--url", quiet_url, "--burst"],
        cwd=ROOT,
        capture_output=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert run.status().state == "succeeded"
    measured = commands(conn)
    assert abs(measured - predicted) / measured < 0.25, (measured, predicted)
