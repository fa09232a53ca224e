"""Real Redis servers the reliability tests start, stop, pause and kill: Debian's redis-server
and redis-sentinel on loopback ports, in a folder of the test's."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
import redis

from benchmarks.server import cluster_ports
from dagrq.workers.processes import Processes, worker_argv

REDIS_SERVER = "/usr/bin/redis-server"
REDIS_SENTINEL = "/usr/bin/redis-sentinel"


def require(binary: str) -> str:
    """``binary``'s path; skip (or, with DAGRQ_REQUIRE_SERVERS=1 as in CI, fail) without it."""
    if os.path.exists(binary):
        return binary
    why = f"needs {binary} (apt-get install redis-server redis-sentinel)"
    if os.environ.get("DAGRQ_REQUIRE_SERVERS"):
        pytest.fail(why)
    pytest.skip(why)
    raise AssertionError  # unreachable


def free_port() -> int:
    """A TCP port free on loopback now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """One redis-server process on ``127.0.0.1:port`` keeping its data in ``folder``.

    ``args`` are extra config lines as command-line options (``--appendonly yes`` ...).
    """

    def __init__(
        self,
        folder: Path,
        *,
        port: int | None = None,
        args: Sequence[str] = (),
        binary: str = "",
        bind: Sequence[str] = ("127.0.0.1",),
    ) -> None:
        self.binary = binary or require(REDIS_SERVER)
        self.bind = list(bind)
        self.folder, self.port = folder, port or free_port()
        self.args = list(args)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = self.folder / "redis.log"

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self, **kwargs: object) -> redis.Redis:
        return redis.Redis(host="127.0.0.1", port=self.port, **kwargs)  # type: ignore[arg-type]

    def command(self) -> list[str]:
        return [
            self.binary,
            "--port", str(self.port),
            "--bind", *self.bind,
            "--dir", str(self.folder),
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.log),
            *self.args,
        ]  # fmt: skip

    def start(self, timeout_s: float = 10.0) -> RedisServer:
        """Start it and wait until it answers PING (loading its data first)."""
        self.proc = subprocess.Popen(
            self.command(), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + timeout_s
        probe = self.client(socket_timeout=1)
        while True:
            try:
                if probe.ping():
                    return self
            except redis.ConnectionError:
                pass
            except redis.ResponseError:  # LOADING: replaying its AOF
                pass
            assert self.proc.poll() is None, self.log.read_text(errors="replace")
            assert time.monotonic() < deadline, f"redis-server on {self.port} did not start"
            time.sleep(0.05)

    def shutdown(self) -> None:
        """SHUTDOWN as an operator would (AOF flushed), and wait for the process to end."""
        if self.proc is None:
            return
        with contextlib.suppress(redis.ConnectionError):
            self.client(socket_timeout=2).shutdown(nosave=False)
        self.proc.wait(timeout=30)
        self.proc = None

    def pause(self) -> None:
        """SIGSTOP: the server holds every connection and answers nothing."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        """SIGCONT after :meth:`pause`."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        """SIGKILL: the machine died."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        """End it, whatever its state (teardown)."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.kill()


class SentinelSet:
    """A primary, two replicas and three sentinels on loopback ports: an HA Redis."""

    SERVICE = "dagrqha"
    #: how long a server is silent before a sentinel calls it down (Redis's default is 30 s).
    #: At 1 s a loaded 2-core machine saw a sentinel call the replica it had just promoted
    #: down, and a second failover dropped what that replica had taken meanwhile.
    DOWN_AFTER_MS = 3000

    def __init__(self, folder: Path) -> None:
        sentinel_binary = require(REDIS_SENTINEL)
        durable = ["--appendonly", "yes", "--appendfsync", "always"]
        durable += ["--repl-diskless-sync-delay", "0"]  # a replica syncs at once, not after 5 s
        self.primary = RedisServer(folder / "primary", args=durable).start()
        self.replicas = [
            RedisServer(
                folder / f"replica{i}",
                args=[*durable, "--replicaof", "127.0.0.1", str(self.primary.port)],
            ).start()
            for i in range(2)
        ]
        self.sentinel_ports = [free_port() for _ in range(3)]
        self.sentinels: list[subprocess.Popen[bytes]] = []
        for i, port in enumerate(self.sentinel_ports):
            conf = folder / f"sentinel{i}.conf"
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndaemonize no\ndir {folder}\n"
                f"logfile {folder / f'sentinel{i}.log'}\n"
                f"sentinel monitor {self.SERVICE} 127.0.0.1 {self.primary.port} 2\n"
                f"sentinel down-after-milliseconds {self.SERVICE} {self.DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {self.SERVICE} 5000\n"
                f"sentinel parallel-syncs {self.SERVICE} 2\n"
            )
            self.sentinels.append(
                subprocess.Popen([sentinel_binary, str(conf)], stdout=subprocess.DEVNULL)
            )
        self._wait_replicas_known()

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{self.SERVICE}/0"

    def primary_port(self) -> int:
        """The primary's port as the sentinels see it now."""
        probe = redis.Redis(port=self.sentinel_ports[0], socket_timeout=2)
        _, port = probe.execute_command("SENTINEL", "get-master-addr-by-name", self.SERVICE)
        return int(port)

    def _wait_replicas_known(self, timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                probe = redis.Redis(port=self.sentinel_ports[0], socket_timeout=2)
                replicas = probe.execute_command("SENTINEL", "replicas", self.SERVICE)
                info = self.primary.client().info("replication")
                online = [
                    v for k, v in info.items() if k.startswith("slave") and isinstance(v, dict)
                ]
                if len(replicas) == 2 and sum(r.get("state") == "online" for r in online) == 2:
                    return
            except redis.RedisError:
                pass
            assert time.monotonic() < deadline, "both replicas never came online"
            time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.sentinels:
            proc.kill()
            proc.wait()
        for server in (self.primary, *self.replicas):
            server.stop()


REDIS_CLI = "/usr/bin/redis-cli"


class ClusterSet:
    """A Redis Cluster of ``primaries`` primaries with a replica each, from Debian's
    redis-server, made by ``redis-cli --cluster create`` on loopback ports."""

    def __init__(self, folder: Path, primaries: int = 3, node_timeout_ms: int = 2000) -> None:
        require(REDIS_CLI)
        self.servers = {
            port: RedisServer(
                folder / str(port),
                port=port,
                args=[
                    *("--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf"),
                    *("--cluster-node-timeout", str(node_timeout_ms), "--appendonly", "yes"),
                ],
            )
            for port in cluster_ports(primaries * 2)
        }
        try:
            for server in self.servers.values():
                server.start()
            addresses = [f"127.0.0.1:{p}" for p in self.servers]
            create = [REDIS_CLI, "--cluster", "create", *addresses, "--cluster-replicas", "1"]
            subprocess.run([*create, "--cluster-yes"], check=True, capture_output=True, timeout=60)
            deadline = time.monotonic() + 30
            while not self._ready():
                assert time.monotonic() < deadline, "the cluster did not become ready"
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        for server in self.servers.values():
            info = server.client(socket_timeout=2).cluster("INFO")
            if info.get("cluster_state") != "ok":
                return False
        return len(self.primaries()) == len(self.servers) // 2

    def url(self, shards: int) -> str:
        """The ``redis+cluster://`` URL naming every node, with ``shards`` shards."""
        nodes = ",".join(f"127.0.0.1:{p}" for p in self.servers)
        return f"redis+cluster://{nodes}?shards={shards}"

    def slots(self) -> list[tuple[int, int, int]]:
        """``(first slot, last slot, primary port)`` per range, as a live node sees them."""
        for server in self.servers.values():
            if server.proc is None:
                continue
            with contextlib.suppress(redis.RedisError):
                rows = server.client(socket_timeout=2).execute_command("CLUSTER SLOTS")
                return [(int(r[0]), int(r[1]), int(r[2][1])) for r in rows]
        raise AssertionError("no node answers")

    def primaries(self) -> set[int]:
        """The ports of the primaries serving slots."""
        return {port for _, _, port in self.slots()}

    def owner(self, slot: int) -> int:
        """The port of the primary serving ``slot``."""
        return next(port for first, last, port in self.slots() if first <= slot <= last)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


class Fleet:
    """`dagrq worker` processes against one server; stopped (logs shown on failure) after."""

    def __init__(self, url: str, folder: Path) -> None:
        self.procs = Processes(
            folder,
            env={
                "DAGRQ_URL": url,
                "DAGRQ_LOG": os.environ.get("TEST_WORKER_LOG", "WARNING"),
                "DAGRQ_CONCURRENCY": "1",
            },
        )

    def start(self, address: str, n: int = 1, *extra: str) -> list:  # type: ignore[type-arg]
        return self.procs.start(worker_argv(address, *extra), n)

    def logs(self) -> str:
        return self.procs.logs()
