"""A supervisor's thread that reads Redis streams in consumer groups until stopped: the event
triggers' (:mod:`dagrq.workers.triggers`) and the alert hooks' (:mod:`dagrq.workers.hooks`)."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from ..model.dag import DAG
from ..model.node import one_line_error

log = logging.getLogger(__name__)

#: seconds between reads of the streams when they had nothing
POLL_S = 0.5


class StreamThread(threading.Thread):
    """Subscribes each DAG (:meth:`subscribe`), then calls :meth:`step` until :meth:`stop`
    (at once again while it finds entries, else after :data:`POLL_S`); Redis trouble is logged
    and retried. With ``drain``, one more step after the stop (a burst pool's last runs)."""

    #: the thread's name, and the word its log lines start with
    label = "streams"

    def __init__(self, connect: Callable[[], Any], dags: Sequence[DAG], drain: bool) -> None:
        super().__init__(name=f"dagrq-{self.label}", daemon=True)
        self.connection = connect()
        self.dags = list(dags)
        self.consumer = f"{socket.gethostname()}:{os.getpid()}"
        self.drain = drain
        self._stopped = threading.Event()

    def subscribe(self, dag: DAG) -> None:
        """Make ``dag``'s consumer group (before the first read)."""
        raise NotImplementedError

    def step(self) -> int:
        """Handle what is waiting; how many entries were read."""
        raise NotImplementedError

    def run(self) -> None:
        """Subscribe, then read until stopped."""
        subscribed = False
        while True:
            stopping = self._stopped.is_set()
            if stopping and not self.drain:
                return
            try:
                if not subscribed:
                    for dag in self.dags:
                        self.subscribe(dag)
                    subscribed = True
                seen = self.step()
            except Exception as exc:  # Redis away: try again
                log.warning("%s: %s", self.label, one_line_error(exc))
                seen = 0
            if stopping:
                return
            self._stopped.wait(0 if seen else POLL_S)

    def stop(self) -> None:
        """Stop after the current read (and a last one, with ``drain``)."""
        self._stopped.set()
