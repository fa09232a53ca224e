"""Nodes for the supervised pool: one that ends its process on its first attempt, ones that
block where RQ's SIGALRM cannot reach them, slow ones for drains, and ones that say which
process ran them."""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import time

from _counting import count as _count
from rq import get_current_job

from dagrq import DAG, Retry

exits_once = DAG("t_pool_exits_once")
blocked = DAG("t_pool_blocked")
slow = DAG("t_pool_slow")
pids = DAG("t_pool_pids")


@exits_once.node(retry=Retry(max=1))
def vanish_once() -> int:
    attempt = _count("vanish_once")
    if attempt == 1:
        os._exit(9)  # the process ends mid-node, as a segfault or the OOM killer would
    return os.getpid()


@exits_once.node
def after(vanish_once: int) -> int:
    return vanish_once


@blocked.node(timeout=1)
def masked_sleep() -> str:
    """Blocked in C with SIGALRM masked, as a C extension that blocks signals: only a kill
    stops it."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    ctypes.CDLL(None).sleep(60)
    return "woke"


@blocked.node(timeout=1)
def silent_socket() -> str:
    """Waits in select() on a socket whose peer never answers (RQ's SIGALRM interrupts it)."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    client = socket.create_connection(listener.getsockname())
    select.select([client], [], [], 60)
    return "answered"


@blocked.node(trigger="all_done")
def report(masked_sleep: str | None, silent_socket: str | None) -> int:
    return os.getpid()


@slow.node
def nap(seconds: float = 3.0) -> int:
    """Sleeps ``seconds`` on its first attempt only (no retry=: a second attempt can only
    come from a drain that put it back)."""
    attempt = _count("nap")
    if attempt == 1:
        job = get_current_job()
        assert job is not None
        job.connection.set(f"test:napping:{job.kwargs['run']}", os.getpid(), ex=600)
        time.sleep(seconds)
    return attempt


@slow.node
def after_nap(nap: int) -> int:
    return nap


@pids.map("items")
def pid_of(items: int) -> int:
    return os.getpid()


@pids.node
def items(n: int = 10) -> list[int]:
    return list(range(n))


stream = DAG("t_pool_stream")


@stream.node
def ticks(n: int) -> list[int]:
    return list(range(n))


@stream.map("ticks")
def tick(ticks: int) -> int:
    """A short job: most of its time is RQ's bookkeeping around it."""
    time.sleep(0.002 * (ticks % 3))
    return ticks


@stream.node
def counted(tick: list[int]) -> int:
    return len(tick)
