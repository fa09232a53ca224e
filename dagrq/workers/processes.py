"""Groups of processes started and stopped together: ``dagrq run``'s local worker, the test
suite's and the benchmarks' workers all come from :class:`Processes`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


def worker_argv(pipeline: str, *extra: str) -> list[str]:
    """The command line of one ``dagrq worker`` for ``pipeline``. The Redis URL is not on it
    (a command line is visible to every user of the machine): give it as ``DAGRQ_URL`` in the
    environment (:meth:`Processes` ``env``)."""
    return [sys.executable, "-m", "dagrq", "worker", pipeline, *extra]


class Processes:
    """A group of processes started together and stopped together (a context manager).

    Args:
        log_dir: where each process's output goes (``<log_name>-<n>.log``); without it,
            output is discarded.
        env: extra environment for every process.
        cwd: their working directory.
    """

    def __init__(
        self,
        log_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.log_dir, self.cwd = log_dir, cwd
        self.env = {**os.environ, **(env or {})}
        self.procs: list[tuple[subprocess.Popen[bytes], Path | None]] = []

    def start(
        self, argv: Sequence[str], n: int = 1, log_name: str = "worker"
    ) -> list[subprocess.Popen[bytes]]:
        """Start ``n`` processes running ``argv``; return them."""
        started = []
        if self.log_dir is not None:
            self.log_dir.mkdir(parents=True, exist_ok=True)
        for _ in range(n):
            log_path = None
            if self.log_dir is not None:
                log_path = self.log_dir / f"{log_name}-{len(self.procs)}.log"
            with open(log_path or os.devnull, "ab") as out:
                proc = subprocess.Popen(
                    list(argv),
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    stdin=subprocess.DEVNULL,
                    env=self.env,
                    cwd=self.cwd,
                )
            self.procs.append((proc, log_path))
            started.append(proc)
        return started

    def stop(self, grace_s: float = 15.0) -> None:
        """SIGTERM every process still running (a warm shutdown: RQ finishes the job at
        hand), then SIGKILL what has not exited after ``grace_s`` seconds."""
        for proc, _ in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for proc, _ in self.procs:
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        """Every process's output so far, each under its file name."""
        return "\n".join(
            f"--- {path.name}\n{path.read_text(errors='replace')}"
            for _, path in self.procs
            if path is not None and path.exists()
        )

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
