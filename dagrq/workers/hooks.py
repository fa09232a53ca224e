"""Alert hooks and run spans, run by every ``dagrq worker`` serving a DAG that has them
(docs/observability.md).

A thread of the pool's supervisor reads the DAG's hook stream (:mod:`dagrq.store.hooks`):
for a run that ended it calls ``on_success`` or ``on_failure``, POSTs the webhook and, with
tracing on, emits the run's span; for an attempt to be retried it calls ``on_retry``. Each
event is acted on once (:func:`dagrq.store.hooks.claim_once`); a callback that raises, or a
webhook that stays unreachable, is logged and changes nothing of the run.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .. import tracing
from ..model.dag import DAG
from ..model.hooks import WEBHOOK_TIMEOUT_S, WEBHOOK_TRIES, HookEvent, end_kind
from ..model.node import one_line_error
from ..model.shapes import status_json
from ..model.status import RunStatus
from ..store import hooks, keys, rqjobs
from ..store.runs import RunStore
from .streams import StreamThread

log = logging.getLogger(__name__)

#: hooks acted on at once by one worker pool (callbacks and webhook deliveries)
HANDLERS = 4


def handle(connection: Any, dag: DAG, news: hooks.News) -> None:
    """Act once on ``news`` of a run of ``dag``: its run span, callback and webhook."""
    if not hooks.claim_once(connection, news, dag.ttl_s):
        return
    store = RunStore(connection, news.run_id)
    try:
        status = store.status()
    except Exception as exc:  # the run expired or was purged before its news was read
        log.warning("hooks of run %s: %s", news.run_id, one_line_error(exc))
        return
    if news.event == "end":
        tracing.run_span(status, store.trace_parent())
    if not dag.hooks:
        return  # read for its run span only (this worker traces)
    event = _event(dag, news, status)
    _call(dag.hooks.callback(event.kind), event)
    if news.event == "end" and dag.hooks.webhook:
        post(dag.hooks.webhook, event)


def _event(dag: DAG, news: hooks.News, status: RunStatus) -> HookEvent:
    """What the hooks are told of ``news``."""
    shown = status_json(status)
    if news.event == "retry":
        node = news.node or ""
        attempt = int(news.state or 0)
        errors = status.nodes[node].attempt_errors if node in status.nodes else []
        error = next((e.get("error") for e in errors if e.get("attempt") == attempt), None)
        return HookEvent(
            "retry", dag.name, news.run_id, status.state, node, attempt, error, shown, news.id
        )
    failed = [n for n in status.nodes.values() if n.state == "failed"]
    return HookEvent(
        end_kind(news.state),
        dag.name,
        news.run_id,
        news.state,
        error=failed[0].error if failed else None,
        status=shown,
        delivery=news.id,
    )


def _call(callback: Callable[[HookEvent], Any] | None, event: HookEvent) -> None:
    """``callback(event)``; whatever it raises is logged (the run is what it is)."""
    if callback is None:
        return
    try:
        callback(event)
    except Exception as exc:
        log.exception(
            "run %s: %s callback %s failed: %s (the run's outcome is unchanged)",
            event.run_id,
            event.kind,
            getattr(callback, "__qualname__", callback),
            one_line_error(exc),
        )


def post(url: str, event: HookEvent) -> bool:
    """POST ``event``'s payload to ``url``: ``{"event": "run.<state>", "delivery": ...,
    "run": <dagrq status --json>}``, retried after 1, 2, 4 s while unreachable or answering
    5xx; signed ``X-Dagrq-Signature: sha256=<hex HMAC>`` when ``$DAGRQ_SECRET`` is set.
    True when the receiver answered 2xx."""
    body = json.dumps(
        {"event": f"run.{event.state}", "delivery": event.delivery, "run": event.status}
    ).encode()
    headers = {"Content-Type": "application/json", "X-Dagrq-Delivery": event.delivery}
    secret = os.environ.get(rqjobs.SECRET_ENV)
    if secret:
        digest = hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        headers["X-Dagrq-Signature"] = f"sha256={digest}"
    why = ""
    for attempt in range(WEBHOOK_TRIES):
        if attempt:
            time.sleep(2 ** (attempt - 1))
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=WEBHOOK_TIMEOUT_S) as answer:
                if 200 <= answer.status < 300:
                    return True
                why = f"answered {answer.status}"
        except urllib.error.HTTPError as exc:
            why = f"answered {exc.code}"
            if exc.code < 500:
                break  # the receiver refuses it: trying again would not help
        except (OSError, ValueError) as exc:
            why = one_line_error(exc)
    log.error("run %s: webhook %s not delivered: %s", event.run_id, url, why)
    return False


class HookThread(StreamThread):
    """Reads the hook streams of the DAGs served until stopped, then once more."""

    label = "hooks"

    def __init__(self, connect: Callable[[], Any], dags: Sequence[DAG]) -> None:
        super().__init__(connect, dags, drain=True)
        self.tracing = tracing.enabled()
        self._said_tracing = -math.inf
        #: callbacks and webhooks run here, so a slow receiver holds up no other run's hooks
        self._acting = ThreadPoolExecutor(HANDLERS, thread_name_prefix="dagrq-hook")

    def subscribe(self, dag: DAG) -> None:
        """Make ``dag``'s hook stream group."""
        hooks.subscribe(self.connection, dag.name)

    def step(self) -> int:
        """Handle what is waiting for each DAG; how many entries were read."""
        if self.tracing and time.monotonic() >= self._said_tracing + keys.TRACING_TTL_S / 3:
            hooks.tracing_here(self.connection)
            self._said_tracing = time.monotonic()
        seen = 0
        for dag in self.dags:
            for news in hooks.read(self.connection, dag.name, self.consumer):
                self._acting.submit(self._handled, dag, news)
                seen += 1
        return seen

    def _handled(self, dag: DAG, news: hooks.News) -> None:
        """Act on ``news``, then acknowledge it (unacknowledged when Redis failed meanwhile:
        taken over after a minute, and acted on once all the same)."""
        try:
            handle(self.connection, dag, news)
        except Exception as exc:
            log.warning("hooks of run %s: %s", news.run_id, one_line_error(exc))
            return
        hooks.acknowledged(self.connection, dag.name, news.id)

    def run(self) -> None:
        """Read until stopped, then let the hooks begun finish."""
        super().run()
        self._acting.shutdown(wait=True)


def hooked(dags: Sequence[DAG]) -> list[DAG]:
    """The DAGs whose hook streams this process reads: those with hooks, and every one when
    tracing is on here (it emits their run spans)."""
    return list(dags) if tracing.enabled() else [d for d in dags if d.hooks]
