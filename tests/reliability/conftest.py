"""Fixtures for tests/reliability: a real Debian redis-server of the test's own (AOF on every
write), and `dagrq worker` processes against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dagrq.workers.processes import Processes, worker_argv

from .servers import RedisServer


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    """A redis-server with ``appendonly yes``, ``appendfsync always``, for this test only."""
    srv = RedisServer(tmp_path / "redis", args=["--appendonly", "yes", "--appendfsync", "always"])
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def rconn(server: RedisServer) -> Iterator[redis.Redis]:
    connection = server.client()
    yield connection
    connection.close()


class Fleet:
    """`dagrq worker` processes against one server; stopped (logs shown on failure) after."""

    def __init__(self, url: str, folder: Path) -> None:
        self.procs = Processes(
            folder, env={"DAGRQ_URL": url, "DAGRQ_LOG": "WARNING", "DAGRQ_CONCURRENCY": "1"}
        )

    def start(self, address: str, n: int = 1, *extra: str) -> list:  # type: ignore[type-arg]
        return self.procs.start(worker_argv(address, *extra), n)

    def logs(self) -> str:
        return self.procs.logs()


@pytest.fixture
def fleet(server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    workers = Fleet(server.url, tmp_path / "logs")
    yield workers
    workers.procs.stop(grace_s=20)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(workers.logs()[-20000:])
