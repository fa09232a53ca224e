"""Starting and stopping processes: groups of programs started and stopped together
(:class:`Processes`: the test suite's and the benchmarks' workers), a function in a forked
process (:func:`fork_process`: ``dagrq run``'s local pool), and a process that dies with its
parent (:func:`die_with`)."""

from __future__ import annotations

import ctypes
import importlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any

_FORK = multiprocessing.get_context("fork")
_STOPS = {signal.SIGTERM, signal.SIGINT}


def default_concurrency() -> int:
    """Processes per pool when none is asked for: the CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def die_with(parent: int) -> None:
    """Ask Linux to SIGKILL this process when its parent dies (a pool process with its
    supervisor, RQ's scheduler with its worker process); exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's own stop must do
        return
    if os.getppid() != parent:  # the parent died before the request took
        os._exit(1)


def fork_process(target: str, args: Sequence[Any], *, log_path: Path) -> BaseProcess:
    """Fork a process that runs ``target`` (``"module:function"``) with ``args``, its output
    appended to ``log_path``, in its own process group (a terminal's Ctrl-C is for this
    process, which stops it), dying with this process. The child imports ``target``'s
    module itself: whatever this process has imported it has already, and what only it
    needs it imports while this process goes on with its own work. Stop it with
    :func:`stop_process`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    old = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPS)  # no handler of ours in the child
    try:
        process = _FORK.Process(
            target=_forked, args=(target, tuple(args), str(log_path), os.getpid()), name=target
        )
        process.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)
    return process


def stop_process(process: BaseProcess, grace_s: float) -> None:
    """SIGTERM a :func:`fork_process` process, SIGKILL it if it has not exited after
    ``grace_s`` seconds."""
    if process.is_alive():
        process.terminate()
    process.join(grace_s)
    if process.is_alive():
        process.kill()
        process.join()


def _forked(target: str, args: tuple[Any, ...], log_path: str, parent: int) -> None:
    os.setpgrp()
    die_with(parent)
    for sig in _STOPS:
        signal.signal(sig, signal.SIG_DFL)
    out = os.open(log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPS)
    module, _, function = target.partition(":")
    getattr(importlib.import_module(module), function)(*args)


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
