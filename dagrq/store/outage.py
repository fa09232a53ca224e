"""Redis out of reach: what counts as an outage, and riding one out.

A restart, a failover or a pause of the server says nothing about a node: a step that meets one
is retried with backoff until the server answers again, for up to a bound (:func:`ride_out`),
instead of failing the node. The steps are fenced and idempotent (``start.lua`` counts a new
attempt, ``complete.lua`` and ``items.lua`` record each outcome once), so a step the server ran
whose reply was lost is safe to run again.

Examples:
    >>> from redis.exceptions import ConnectionError, ResponseError
    >>> unreachable(ConnectionError("Connection closed by server.")), unreachable(ResponseError())
    (True, False)
    >>> recorded_unreachable("redis.exceptions.ConnectionError: Error 111 connecting to x:1.")
    True
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

from redis.exceptions import ConnectionError, ReadOnlyError, TimeoutError

log = logging.getLogger(__name__)

T = TypeVar("T")

#: what redis-py raises when the server is out of reach: a closed or refused connection, a
#: time-out, a server still loading its data (``BusyLoadingError``) or a Sentinel with no primary
#: (both ``ConnectionError`` s), or a primary turned replica by a failover
UNREACHABLE: tuple[type[Exception], ...] = (ConnectionError, TimeoutError, ReadOnlyError)
#: the same errors by the names RQ records a job's failure under
UNREACHABLE_NAMES = (
    "redis.exceptions.ConnectionError",
    "redis.exceptions.TimeoutError",
    "redis.exceptions.BusyLoadingError",
    "redis.exceptions.ReadOnlyError",
    "redis.sentinel.MasterNotFoundError",
)
#: backoff between tries: from the first to the longest, doubling
FIRST_S, LONGEST_S = 0.1, 2.0


def unreachable(exc: BaseException) -> bool:
    """True when ``exc`` is Redis being out of reach (not a refused command)."""
    return isinstance(exc, UNREACHABLE)


def recorded_unreachable(failure: str) -> bool:
    """True when a job's recorded failure (its last line) is Redis being out of reach: dagrq
    could not read or report the node, which says nothing about the node itself."""
    return failure.startswith(UNREACHABLE_NAMES)


def ride_out(what: str, step: Callable[[], T], within_s: float) -> T:
    """``step()``, tried again with backoff while Redis is out of reach, for up to
    ``within_s`` seconds (0: once).

    Raises:
        redis.exceptions.ConnectionError: (or another of :data:`UNREACHABLE`) Redis was still
            out of reach after ``within_s`` seconds.
    """
    deadline = time.monotonic() + within_s
    delay, said = FIRST_S, False
    while True:
        try:
            value = step()
        except UNREACHABLE as exc:
            if time.monotonic() + delay > deadline:
                raise
            if not said:
                log.warning(
                    "Redis out of reach at %s (%s); trying again until it answers", what, exc
                )
                said = True
            time.sleep(delay)
            delay = min(LONGEST_S, delay * 2)
            continue
        if said:
            log.warning("Redis answers again: %s done", what)
        return value
