"""Fixtures for tests/reliability: a real Debian redis-server of the test's own (AOF on every
write), and `dagrq worker` processes against it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from .servers import Fleet, RedisServer


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


@pytest.fixture
def fleet(server: RedisServer, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Fleet]:
    workers = Fleet(server.url, tmp_path / "logs")
    yield workers
    workers.procs.stop(grace_s=20)
    report = getattr(request.node, "rep_call", None)
    if report is not None and report.failed:
        print(workers.logs()[-20000:])
