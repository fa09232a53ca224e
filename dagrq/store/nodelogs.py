"""Node logs: what each attempt of a node printed and logged, kept in Redis with its run.

While a node body runs, :class:`Capture` takes its ``stdout``, ``stderr`` and ``logging``
records (``DAGRQ_NODE_LOG_LEVEL``, default ``INFO``; the worker's own ``rq``/``dagrq`` lines
are not a node's) into one stream per node (:func:`dagrq.store.keys.logs_key`): entries carry the
attempt, the item of a mapped node, the stream and the line. The first line of an attempt is
preceded by a ``meta`` entry naming the host and pid. A node that prints nothing costs
nothing; lines are written in batches (every :data:`FLUSH_LINES` lines or
:data:`FLUSH_S` seconds, by a timer when no next line comes, and at the end), a stream keeps
the newest :data:`MAX_ENTRIES` entries, and it expires with the run. Logging never fails a
node: a write that fails is dropped, with a warning in the worker's own log.
"""

from __future__ import annotations

import io
import logging
import os
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from . import runkeys

log = logging.getLogger(__name__)

#: entries kept per node (approximately: Redis trims whole macro nodes)
MAX_ENTRIES = 10_000
#: characters kept of one line
MAX_LINE = 8192
#: a batch is written after this many lines, or after this many seconds
FLUSH_LINES = 100
FLUSH_S = 0.5
#: the environment variable with the lowest ``logging`` level captured
LEVEL_ENV = "DAGRQ_NODE_LOG_LEVEL"
#: loggers whose records are the worker's, not the node's
WORKER_LOGGERS = ("rq", "dagrq")


@dataclass(frozen=True)
class LogEntry:
    """One line of a node's log.

    Attributes:
        id: the stream entry id (``<ms>-<seq>``): its order, and its time.
        node: the node.
        attempt: the attempt (1 for the first).
        stream: ``stdout``, ``stderr``, ``log`` (a ``logging`` record), ``meta`` (where the
            attempt runs: ``line`` is ``<host>:<pid>``) or ``error`` (how a failed attempt
            ended: its one-line error, the attempt's last line).
        line: the text, without its newline.
        level: a ``logging`` record's level name.
        item: the item index, for an item of a mapped node.
    """

    id: str
    node: str
    attempt: int
    stream: str
    line: str
    level: str | None = None
    item: int | None = None

    @property
    def ts(self) -> float:
        """Unix time of the entry (from its id)."""
        return int(self.id.split("-")[0]) / 1000


def capture_level() -> int:
    """The lowest ``logging`` level captured (``$DAGRQ_NODE_LOG_LEVEL``, default INFO)."""
    name = os.environ.get(LEVEL_ENV, "INFO").upper()
    level = logging.getLevelName(name)
    return level if isinstance(level, int) else logging.INFO


class Capture:
    """Capture a node body's output while in the ``with`` block (see the module)."""

    def __init__(
        self,
        connection: Any,
        run_id: str,
        node: str,
        attempt: int,
        ttl_s: int,
        item: int | None = None,
    ) -> None:
        self.connection, self.key, self.ttl_s = connection, runkeys.logs_key(run_id, node), ttl_s
        self.base: dict[str, str] = {"a": str(attempt)}
        #: the item of a mapped node now running (lines name it); None for a plain node
        self.item = item
        self.pending: list[dict[str, str]] = []
        self._lock = threading.Lock()
        #: writes what waits at most FLUSH_S after its line, when no next line comes to
        self._timer: threading.Timer | None = None
        self.started = False
        self.last_flush = time.monotonic()
        self.level = capture_level()
        self._saved: tuple[Any, Any, int] | None = None
        self._handler = _Handler(self)

    def __enter__(self) -> Capture:
        root = logging.getLogger()
        self._saved = (sys.stdout, sys.stderr, root.level)
        sys.stdout = _Stream(self, "stdout")
        sys.stderr = _Stream(self, "stderr")
        self._handler.setLevel(self.level)
        root.addHandler(self._handler)
        if root.level > self.level or root.level == logging.NOTSET:
            root.setLevel(self.level)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._saved is not None
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, _Stream):
                stream.close()
        root = logging.getLogger()
        sys.stdout, sys.stderr, level = self._saved
        root.removeHandler(self._handler)
        root.setLevel(level)
        if self._timer is not None:
            self._timer.cancel()
        self.flush()

    def add(self, stream: str, line: str, level: str | None = None) -> None:
        """Queue one line; write the batch when it is due."""
        base = self.base if self.item is None else {**self.base, "i": str(self.item)}
        if not self.started:
            self.started = True
            where = f"{socket.gethostname()}:{os.getpid()}"
            self.pending.append({**base, "s": "meta", "m": where})
        entry = {**base, "s": stream, "m": line[:MAX_LINE]}
        if level is not None:
            entry["l"] = level
        with self._lock:
            self.pending.append(entry)
            due = time.monotonic() - self.last_flush >= FLUSH_S
            if not (len(self.pending) >= FLUSH_LINES or due) and self._timer is None:
                self._timer = threading.Timer(FLUSH_S, self.flush)
                self._timer.daemon = True
                self._timer.start()
        if len(self.pending) >= FLUSH_LINES or due:
            self.flush()

    def flush(self) -> None:
        """Write the queued lines (one pipelined round trip); called by :meth:`add` when a
        batch is due, by a timer :data:`FLUSH_S` after a line no other line followed (so a
        page following the log sees it), and at the end."""
        with self._lock:
            if self._timer is not None and self._timer is not threading.current_thread():
                self._timer.cancel()
            self._timer = None
            if not self.pending:
                return
            entries, self.pending = self.pending, []
            self.last_flush = time.monotonic()
        try:
            pipe = self.connection.pipeline(transaction=False)
            for entry in entries:
                pipe.xadd(self.key, entry, maxlen=MAX_ENTRIES, approximate=True)
            pipe.expire(self.key, self.ttl_s)
            pipe.execute()
        except Exception as exc:  # never fail a node for its log
            log.warning("node log lines to %s dropped: %s", self.key, exc)


class _Stream(io.TextIOBase):
    """A text stream that hands whole lines to a :class:`Capture`."""

    def __init__(self, capture: Capture, name: str) -> None:
        super().__init__()
        self.capture, self.name, self.partial = capture, name, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self.partial + text).split("\n")
        self.partial = lines.pop()
        for line in lines:
            self.capture.add(self.name, line)
        return len(text)

    def close(self) -> None:
        if self.partial:
            self.capture.add(self.name, self.partial)
            self.partial = ""
        super().close()


class _Handler(logging.Handler):
    """Hands a node's ``logging`` records to a :class:`Capture` (not the worker's own)."""

    def __init__(self, capture: Capture) -> None:
        super().__init__()
        self.capture = capture
        self.setFormatter(logging.Formatter("%(name)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in WORKER_LOGGERS:
            return
        try:
            text = self.format(record)
        except Exception:
            return
        for line in text.split("\n"):
            self.capture.add("log", line, record.levelname)


def read(
    connection: Any, run_id: str, nodes: Sequence[str], *, after: dict[str, str] | None = None
) -> list[LogEntry]:
    """The stored lines of ``nodes`` in one run, oldest first (all nodes merged by time);
    with ``after`` (``{node: entry id}``) only the newer ones."""
    pipe = connection.pipeline(transaction=False)
    for node in nodes:
        start = "(" + after[node] if after and node in after else "-"
        pipe.xrange(runkeys.logs_key(run_id, node), min=start)
    out = [
        _entry(node, raw_id, fields)
        for node, entries in zip(nodes, pipe.execute(), strict=True)
        for raw_id, fields in entries
    ]
    return sorted(out, key=lambda e: tuple(int(x) for x in e.id.split("-")))


def follow(
    connection: Any, run_id: str, nodes: Sequence[str], *, block_ms: int = 1000
) -> Iterator[LogEntry | None]:
    """Every line of ``nodes``, then new ones as they come (``XREAD BLOCK``); yields None
    after each wait so the caller can stop (say, when the run has ended)."""
    last: dict[str, str] = {}
    for entry in read(connection, run_id, nodes):
        last[entry.node] = entry.id
        yield entry
    streams = {runkeys.logs_key(run_id, n): n for n in nodes}
    while True:
        got = connection.xread(
            {key: last.get(node, "0-0") for key, node in streams.items()}, block=block_ms
        )
        fresh = [
            _entry(streams[_text(key)], raw_id, fields)
            for key, entries in got or []
            for raw_id, fields in entries
        ]
        for entry in sorted(fresh, key=lambda e: tuple(int(x) for x in e.id.split("-"))):
            last[entry.node] = entry.id
            yield entry
        yield None


def wait_after(
    connection: Any, run_id: str, node: str, after: str, block_ms: int
) -> list[LogEntry]:
    """``node``'s lines after entry ``after`` (``0-0``: from the start), waiting up to
    ``block_ms`` for one to come (one blocking ``XREAD``; the web view's live tail)."""
    got = connection.xread({runkeys.logs_key(run_id, node): after}, block=block_ms)
    return [_entry(node, raw_id, fields) for _, entries in got or [] for raw_id, fields in entries]


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _entry(node: str, raw_id: Any, fields: dict[Any, Any]) -> LogEntry:
    f = {_text(k): _text(v) for k, v in fields.items()}
    return LogEntry(
        id=_text(raw_id),
        node=node,
        attempt=int(f.get("a", "0")),
        stream=f.get("s", "stdout"),
        line=f.get("m", ""),
        level=f.get("l"),
        item=int(f["i"]) if "i" in f else None,
    )
