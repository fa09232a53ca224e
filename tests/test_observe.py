"""Observability against real parts: Debian's Prometheus scraping `dagrq metrics` and
`dagrq ui`, alert hooks and a webhook receiver, OpenTelemetry traces across two worker
processes, JSON log lines (docs/observability.md)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any

import pytest
import redis

from dagrq import metrics
from dagrq.errors import RunFailed
from dagrq.model.observe import BUCKETS
from dagrq.store import keys

from .helpers import Processes, Workers, pipeline
from .pipelines import observe


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Receiver:
    """A loopback webhook receiver that answers 500 to the first POST, 200 after."""

    def __init__(self) -> None:
        self.posts: list[dict[str, Any]] = []
        posts = self.posts

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                posts.append(body)
                self.send_response(500 if len(posts) == 1 else 200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()


def _until(check: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def _query(prom: str, expr: str) -> dict[str, float]:
    url = f"{prom}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            data = json.load(answer)["data"]["result"]
    except OSError:
        return {}
    return {r["metric"].get("job", ""): float(r["value"][1]) for r in data}


def test_the_lua_buckets_are_the_python_ones() -> None:
    lib = resources.files("dagrq.store").joinpath("lua", "_lib.lua").read_text()
    assert f"local METRICS = '{keys.METRICS_KEY}'" in lib
    assert f"local HOOKS = '{keys.HOOKS_PREFIX}'" in lib
    assert f"local TRACING = '{keys.TRACING_KEY}'" in lib
    assert f"local HOOKS_MAX = {keys.HOOKS_MAX}" in lib
    spelled = lib.split("local BUCKETS = {")[1].split("}")[0]
    assert [float(b) for b in spelled.replace("\n", " ").split(",")] == list(BUCKETS)


def test_a_scrape_costs_one_command_more_per_active_run_and_nothing_per_ended_one(
    quiet_conn: redis.Redis,
) -> None:
    """The exporter's Redis commands per scrape, counted on a server of its own."""
    registry = metrics.registry(quiet_conn)

    def commands() -> int:
        before = int(quiet_conn.info("stats")["total_commands_processed"])
        metrics.render(registry)
        return int(quiet_conn.info("stats")["total_commands_processed"]) - before - 1

    observe.ok.submit(quiet_conn)
    one = commands()
    for _ in range(9):
        observe.ok.submit(quiet_conn)
    ten = commands()
    assert ten - one == 9  # one HMGET per active run, in one pipelined round trip
    print(f"commands per scrape: {one} with one active run and one queue")
    assert one <= 12  # 5 + A + 3Q + Q' + S + W, and one for the pools (docs/observability.md)


def _prometheus() -> str:
    """Debian's Prometheus server; skip (or, with DAGRQ_REQUIRE_SERVERS=1 as in CI, fail)
    without it."""
    found = shutil.which("prometheus")
    if found:
        return found
    why = "needs Debian's prometheus (apt-get install prometheus)"
    if os.environ.get("DAGRQ_REQUIRE_SERVERS"):
        pytest.fail(why)
    pytest.skip(why)
    raise AssertionError  # unreachable


def test_prometheus_scrapes_counters_histograms_and_hooks_run_once(
    redis_url: str, conn: redis.Redis, workers: Workers, tmp_path: Path, receiver: Receiver
) -> None:
    """A run that retries one node and fails another, read back through Prometheus's own
    query API from both exporters; its failing on_failure hook changes nothing; the webhook
    gets one delivery per run end, retried after a 500."""
    prometheus = _prometheus()
    workers.procs.env["T_OBS_WEBHOOK"] = receiver.url
    exporter, ui, prom_port = _port(), _port(), _port()
    env = {"DAGRQ_URL": redis_url}
    (tmp_path / "side").mkdir()
    side = Processes(tmp_path / "side", env=env, cwd=tmp_path)
    side.start(["dagrq", "metrics", "--port", str(exporter)], 1)
    side.start(["dagrq", "ui", "--port", str(ui)], 1)
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n"
        f"  - job_name: exporter\n    static_configs: [{{targets: ['127.0.0.1:{exporter}']}}]\n"
        f"  - job_name: ui\n    static_configs: [{{targets: ['127.0.0.1:{ui}']}}]\n"
    )
    side.start(
        [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        1,
    )
    try:
        workers.start(pipeline("observe", "dag"), 2, pipeline("observe", "ok"))
        run = observe.dag.submit(conn)
        with pytest.raises(RunFailed):
            run.wait(timeout=60)
        observe.ok.submit(conn).wait(timeout=60)
        prom = f"http://127.0.0.1:{prom_port}"
        expected = {
            'dagrq_node_retries_total{dag="t_obs",node="flaky"}': 1.0,
            'dagrq_nodes_total{dag="t_obs",node="broken",state="failed"}': 1.0,
            'dagrq_nodes_total{dag="t_obs",node="joined",state="succeeded"}': 1.0,
            'dagrq_node_attempts_total{dag="t_obs",node="flaky"}': 2.0,
            'dagrq_runs_total{dag="t_obs",state="failed"}': 1.0,
            'dagrq_runs_total{dag="t_obs_ok",state="succeeded"}': 1.0,
            'dagrq_node_duration_seconds_count{dag="t_obs",node="a"}': 1.0,
        }
        for expr, value in expected.items():
            got = _until(lambda e=expr: len(_query(prom, e)) == 2 and _query(prom, e), 30)
            assert got == {"exporter": value, "ui": value}, expr
        slow = _query(prom, 'dagrq_node_duration_seconds_bucket{node="a",le="0.25"}')
        assert slow == {"exporter": 0.0, "ui": 0.0}  # a slept 0.3 s: above that bucket
        heard = _until(lambda: len(conn.lrange(f"test:obs:{run.id}", 0, -1)) >= 2, 15)
        assert heard
        events = sorted(json.loads(e)[0] for e in conn.lrange(f"test:obs:{run.id}", 0, -1))
        assert events == ["failure", "retry"]  # once each; the failing hook changed nothing
        assert run.status().state == "failed"
        assert _until(lambda: len(receiver.posts) >= 3, 20)
        time.sleep(1)
        deliveries = {p["delivery"] for p in receiver.posts}
        assert len(receiver.posts) == 3 and len(deliveries) == 2  # the first retried once
        assert {p["event"] for p in receiver.posts} == {"run.failed", "run.succeeded"}
        assert {p["run"]["id"] for p in receiver.posts} == {
            run.id,
            *(p["run"]["id"] for p in receiver.posts if p["event"] == "run.succeeded"),
        }
    finally:
        side.stop()


@pytest.fixture
def tracer() -> Iterator[Any]:
    """The OpenTelemetry SDK with an in-memory exporter as this process's tracer provider,
    put back to none afterwards (other tests submit untraced)."""
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.util._once import Once

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    yield exporter
    trace._TRACER_PROVIDER = None  # the SDK has no public reset; its own tests do this
    trace._TRACER_PROVIDER_SET_ONCE = Once()


def test_one_trace_from_the_submitter_through_two_workers_and_json_logs(
    conn: redis.Redis, workers: Workers, tmp_path: Path, tracer: Any
) -> None:
    """The submitter's span, the run span and every node attempt's span in one trace, with
    the right parents and links, across two worker processes writing spans to a file; the
    failing node's span holds its exception; the workers' JSON log lines name run, node,
    attempt and trace."""
    from opentelemetry import trace

    spans_file = tmp_path / "spans.jsonl"
    workers.procs.env["DAGRQ_OTEL_FILE"] = str(spans_file)
    workers.start(pipeline("observe", "dag"), 2, "--log-format", "json", "--log-level", "INFO")
    with trace.get_tracer("test").start_as_current_span("request") as request:
        run = observe.dag.submit(conn)
    with pytest.raises(RunFailed):
        run.wait(timeout=60)

    def spans() -> list[dict[str, Any]]:
        lines = spans_file.read_text().splitlines() if spans_file.exists() else []
        return [json.loads(line) for line in lines]

    assert _until(lambda: any(s["name"] == "run t_obs" for s in spans()), 20)
    trace_id = f"0x{request.get_span_context().trace_id:032x}"
    mine = {s["context"]["span_id"]: s for s in spans() if s["context"]["trace_id"] == trace_id}
    assert len(mine) == len(spans())  # nothing outside the submitter's trace
    submit = next(s for s in tracer.get_finished_spans() if s.name == "submit t_obs")
    assert submit.parent.span_id == request.get_span_context().span_id
    (run_span,) = [s for s in mine.values() if s["name"] == "run t_obs"]
    assert run_span["parent_id"] == f"0x{submit.context.span_id:016x}"
    assert run_span["status"]["status_code"] == "ERROR"
    nodes = [s for s in mine.values() if s["name"].startswith("process t_obs.")]
    attempts = sorted(
        (s["attributes"]["dagrq.node"], s["attributes"]["dagrq.attempt"]) for s in nodes
    )
    assert attempts == [
        ("a", 1),
        ("b", 1),
        ("broken", 1),
        ("flaky", 1),
        ("flaky", 2),
        ("joined", 1),
    ]
    assert {s["parent_id"] for s in nodes} == {run_span["context"]["span_id"]}
    assert len({s["attributes"]["dagrq.worker"] for s in nodes}) == 2  # two processes
    by = {(s["attributes"]["dagrq.node"], s["attributes"]["dagrq.attempt"]): s for s in nodes}
    linked = {link["context"]["span_id"] for link in by["joined", 1]["links"]}
    assert linked == {by["flaky", 2]["context"]["span_id"], by["b", 1]["context"]["span_id"]}
    (raised,) = [e for e in by["broken", 1]["events"] if e["name"] == "exception"]
    assert raised["attributes"]["exception.type"] == "ValueError"
    assert by["broken", 1]["status"]["status_code"] == "ERROR"

    lines = [ln for ln in workers.logs().splitlines() if ln and not ln.startswith("--- ")]
    logged = [json.loads(ln) for ln in lines]  # every line parses
    failed = [r for r in logged if r.get("node") == "broken" and "failed" in r["message"]]
    assert failed and failed[0]["run"] == run.id and failed[0]["attempt"] == 1
    assert failed[0]["trace_id"] == trace_id.removeprefix("0x")


def test_the_grafana_dashboard_uses_only_metrics_the_exporter_has(quiet_conn: redis.Redis) -> None:
    import re

    families = {m.name for m in metrics.Collector(quiet_conn).collect()}
    dashboard = (Path(__file__).parent.parent / "docs" / "grafana-dashboard.json").read_text()
    used = {re.sub(r"_(total|bucket)$", "", n) for n in re.findall(r"dagrq_[a-z_]+", dashboard)}
    assert used and used <= families, used - families


def test_ui_metrics_need_the_token_off_loopback_as_a_bearer(
    redis_url: str, conn: redis.Redis, tmp_path: Path
) -> None:
    """`dagrq ui` bound beyond loopback (127.0.0.2 is not in its loopback list) serves
    /metrics only to a request with its token as a bearer token."""
    port = _port()
    ui = Processes(tmp_path, env={"DAGRQ_URL": redis_url}, cwd=tmp_path)
    ui.start(["dagrq", "ui", "--host", "127.0.0.2", "--port", str(port), "--token", "s3cret"], 1)
    observe.ok.submit(conn)

    def get(token: str | None) -> tuple[int, str]:
        request = urllib.request.Request(f"http://127.0.0.2:{port}/metrics")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=5) as answer:
                return answer.status, answer.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, ""
        except OSError:
            return 0, ""

    try:
        assert _until(lambda: get(None)[0] == 403, 20)
        assert get("nope")[0] == 403
        status, text = get("s3cret")
        assert status == 200
        assert 'dagrq_runs_active{dag="t_obs_ok",state="running"} 1.0' in text
    finally:
        ui.stop()
