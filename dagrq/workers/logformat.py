"""Worker log lines as text or as one JSON object per line (``dagrq worker --log-format``,
``$DAGRQ_LOG_FORMAT``; docs/observability.md)."""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime

from .. import tracing
from ..model.commands import CURRENT

#: the environment variable naming the format (``text``, the default, or ``json``)
FORMAT_ENV = "DAGRQ_LOG_FORMAT"
#: the formats
FORMATS = ("text", "json")
#: a text line
TEXT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts`` (ISO 8601, UTC), ``level``, ``logger``,
    ``message``, ``pid``; inside a node attempt ``run``, ``node``, ``attempt``; with tracing
    on, ``trace_id``; ``exception`` when the record has one."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        out: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "pid": record.process,
        }
        context = CURRENT.get()
        if context is not None:
            out.update(run=context.run_id, node=context.node, attempt=context.attempt)
        trace_id = tracing.current_trace_id()
        if trace_id:
            out["trace_id"] = trace_id
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def formatter() -> logging.Formatter:
    """The formatter :data:`FORMAT_ENV` names (text when unset)."""
    if os.environ.get(FORMAT_ENV, "text").lower() == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT)
