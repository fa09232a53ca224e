"""Alert hooks, pure: ``DAG(on_success=, on_failure=, on_retry=, webhook=)`` checked, and
what a hook is told (docs/observability.md).

A hook never runs inside a Lua step: the step that ends a run (or retries a node) of a DAG
with hooks appends the news to the DAG's hook stream, and a ``dagrq worker`` serving the DAG
runs the hooks once per event (:mod:`dagrq.workers.hooks`). A hook that raises is logged and
changes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from ..errors import DAGError

#: seconds a webhook POST may take before it counts as failed
WEBHOOK_TIMEOUT_S = 10.0
#: POSTs of one webhook delivery at most: the first and three retries, after 1, 2 and 4 s,
#: when the receiver is unreachable or answers 5xx (4xx is its refusal: not retried)
WEBHOOK_TRIES = 4

#: what a hook hears of: a run that succeeded, failed or was canceled, or a failed attempt
#: that will be retried
Kind = Literal["success", "failure", "canceled", "retry"]


@dataclass(frozen=True)
class HookEvent:
    """What an ``on_success`` / ``on_failure`` / ``on_retry`` callback is called with.

    Attributes:
        kind: ``success``, ``failure`` (the run failed), ``canceled`` (webhook only) or
            ``retry`` (a failed attempt of ``node`` will run again).
        dag: the DAG's name.
        run_id: the run's id.
        state: the run's state (``succeeded``, ``failed``, ``canceled``, ``running``).
        node: for ``retry``, the node; else None.
        attempt: for ``retry``, the attempt that failed.
        error: for ``retry``, that attempt's one-line error; for ``failure``, the first
            failed node's error.
        status: the run as ``dagrq status RUN --json`` shows it (what the webhook posts).
        delivery: the event's id, the same for every delivery attempt of it.
    """

    kind: Kind
    dag: str
    run_id: str
    state: str
    node: str | None = None
    attempt: int | None = None
    error: str | None = None
    status: dict[str, Any] = field(default_factory=dict)
    delivery: str = ""


Callback = Callable[[HookEvent], Any]


@dataclass(frozen=True)
class Hooks:
    """A DAG's alert hooks (none by default)."""

    on_success: Callback | None = None
    on_failure: Callback | None = None
    on_retry: Callback | None = None
    webhook: str | None = None

    def __bool__(self) -> bool:
        return any((self.on_success, self.on_failure, self.on_retry, self.webhook))

    def callback(self, kind: Kind) -> Callback | None:
        """The callback for ``kind`` (None for ``canceled``: a cancel is someone's choice,
        told only to the webhook)."""
        return {"success": self.on_success, "failure": self.on_failure, "retry": self.on_retry}.get(
            kind
        )


def declared_hooks(
    dag: str,
    *,
    on_success: Callback | None,
    on_failure: Callback | None,
    on_retry: Callback | None,
    webhook: str | None,
) -> Hooks:
    """The hooks of DAG ``dag``, checked.

    Raises:
        DAGError: a callback that is not callable, or a webhook that is not an http(s) URL.

    Examples:
        >>> bool(declared_hooks("d", on_success=None, on_failure=print, on_retry=None,
        ...                     webhook=None))
        True
        >>> declared_hooks("d", on_success=None, on_failure=None, on_retry=None, webhook="ftp://x")
        Traceback (most recent call last):
        ...
        dagrq.errors.DAGError: DAG 'd': webhook 'ftp://x' is not an http:// or https:// URL
    """
    callbacks = {"on_success": on_success, "on_failure": on_failure, "on_retry": on_retry}
    for name, fn in callbacks.items():
        if fn is not None and not callable(fn):
            raise DAGError(
                f"DAG {dag!r}: {name}={fn!r} is not callable; pass a function taking one "
                "dagrq.HookEvent"
            )
    if webhook is not None:
        parts = urlsplit(webhook) if isinstance(webhook, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
            raise DAGError(f"DAG {dag!r}: webhook {webhook!r} is not an http:// or https:// URL")
    return Hooks(on_success, on_failure, on_retry, webhook)


def end_kind(state: str) -> Kind:
    """The hook kind of a run that ended in ``state``."""
    return {"succeeded": "success", "canceled": "canceled"}.get(state, "failure")  # type: ignore[return-value]
