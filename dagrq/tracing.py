"""OpenTelemetry spans of runs and node attempts, one trace per run across processes and
hosts (``pip install 'dagrq[otel]'``; docs/observability.md).

On only in a process whose global tracer provider is the SDK's (set by the user's code, by
``opentelemetry-instrument``, or by ``dagrq worker`` from ``$DAGRQ_OTEL_FILE``:
:func:`setup_from_env`); otherwise every function here returns at once (no OpenTelemetry
import when it is not installed). Span ids are derived from the run id (and node, attempt),
so any process can parent a node's span to its run's span, link it to its parents' spans and
emit the run span at the end, with nothing more stored than the submitter's context (the run
hash's ``trace`` field, a W3C ``traceparent``).
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import os
from collections.abc import Iterator
from typing import Any

from .errors import DagrqError
from .model.status import RunStatus

#: a file to write spans to, one JSON object per line (``dagrq worker``; the SDK's console
#: exporter, no collector needed)
FILE_ENV = "DAGRQ_OTEL_FILE"
_SCOPE = "dagrq"
_api: Any = None  # the opentelemetry.trace module once imported; False: not installed


def _trace() -> Any:
    global _api
    if _api is None:
        try:
            from opentelemetry import trace

            _api = trace
        except ImportError:
            _api = False
    return _api


def enabled() -> bool:
    """Whether this process traces: OpenTelemetry is installed and its global tracer provider
    is the SDK's."""
    api = _trace()
    if not api:
        return False
    provider = api.get_tracer_provider()
    return hasattr(provider, "add_span_processor")


def setup_from_env() -> bool:
    """With ``$DAGRQ_OTEL_FILE`` set, make this process's tracer provider write each span to
    that file as one JSON line; True when it did.

    Raises:
        DagrqError: the variable is set but the OpenTelemetry SDK is not installed.
    """
    path = os.environ.get(FILE_ENV)
    if not path:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
    except ImportError:
        raise DagrqError(
            f"${FILE_ENV} is set but the OpenTelemetry SDK is not installed: "
            "pip install 'dagrq[otel]' (or unset it)"
        ) from None

    out = open(path, "a", buffering=1)  # noqa: SIM115 - the exporter writes to it for life
    name = os.environ.get("OTEL_SERVICE_NAME", "dagrq-worker")
    provider = TracerProvider(resource=Resource.create({"service.name": name}))
    exporter = ConsoleSpanExporter(out=out, formatter=lambda s: s.to_json(indent=None) + "\n")
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return True


def _id(bits: int, *parts: object) -> int:
    digest = hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=bits // 8).digest()
    return int.from_bytes(digest, "big") or 1


def run_span_id(run_id: str) -> int:
    """The run span's id (derived from the run id)."""
    return _id(64, "run", run_id)


def node_span_id(run_id: str, node: str, attempt: int) -> int:
    """The span id of attempt ``attempt`` of ``node`` in the run."""
    return _id(64, "node", run_id, node, attempt)


def _parsed(traceparent: str | None, run_id: str) -> tuple[int, int, int]:
    """(trace id, submitter span id or 0, trace flags) of a stored ``traceparent``; without
    one, the trace id derived from the run id, sampled."""
    if traceparent:
        parts = traceparent.split("-")
        if len(parts) == 4:
            return int(parts[1], 16), int(parts[2], 16), int(parts[3], 16)
    return _id(128, "trace", run_id), 0, 1


def _span_context(trace_id: int, span_id: int, flags: int) -> Any:
    api = _trace()
    return api.SpanContext(trace_id, span_id, is_remote=True, trace_flags=api.TraceFlags(flags))


def _context(trace_id: int, span_id: int, flags: int) -> Any:
    """A context whose current span is the (remote) span ``span_id``: a parent. The trace
    flags carry the submitter's sampling decision to every process."""
    api = _trace()
    return api.set_span_in_context(api.NonRecordingSpan(_span_context(trace_id, span_id, flags)))


def _tracer(span_id: int, trace_id: int) -> Any:
    """A tracer whose next span gets ``span_id`` (and ``trace_id`` when it has no parent)."""
    from opentelemetry.sdk.trace.id_generator import IdGenerator

    class Fixed(IdGenerator):
        def generate_span_id(self) -> int:
            return span_id

        def generate_trace_id(self) -> int:
            return trace_id

    tracer = copy.copy(_trace().get_tracer(_SCOPE))
    tracer.id_generator = Fixed()
    return tracer


@contextlib.contextmanager
def submitting(dag: str) -> Iterator[dict[str, str]]:
    """Around a submit: a ``submit <dag>`` span (a child of the caller's current span) whose
    context the run stores; yields the run hash fields to add (``{"trace": traceparent}``, or
    nothing when tracing is off)."""
    if not enabled():
        yield {}
        return
    api = _trace()
    with api.get_tracer(_SCOPE).start_as_current_span(
        f"submit {dag}", kind=api.SpanKind.PRODUCER, attributes={"dagrq.dag": dag}
    ) as span:
        ctx = span.get_span_context()
        yield {"trace": f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{int(ctx.trace_flags):02x}"}


def run_span(status: RunStatus, traceparent: str | None) -> None:
    """Emit the span of a run that ended (start: its submit; end: its end), a child of the
    submitter's span; called once per run by the worker that handles its end."""
    if not enabled():
        return
    trace_id, parent, flags = _parsed(traceparent, status.id)
    api = _trace()
    ctx = _context(trace_id, parent, flags) if parent else None
    span = _tracer(run_span_id(status.id), trace_id).start_span(
        f"run {status.dag}",
        context=ctx,
        start_time=int(status.created_at * 1e9),
        attributes={
            "dagrq.dag": status.dag,
            "dagrq.run_id": status.id,
            "dagrq.state": status.state,
        },
    )
    if status.state == "failed":
        span.set_status(api.Status(api.StatusCode.ERROR, "run failed"))
    span.end(end_time=int((status.ended_at or status.created_at) * 1e9))


@contextlib.contextmanager
def node_span(
    run_id: str,
    dag: str,
    node: str,
    attempt: int,
    traceparent: str | None,
    parents: dict[str, int],
    attributes: dict[str, Any],
    part: str = "",
) -> Iterator[None]:
    """Around one attempt of ``node``: its span, a child of the run span, linked to the span
    of each parent's last attempt (``parents``: name -> attempts); an exception escaping
    is recorded on it (and raised on). ``part`` names a map's chunk job (its own span,
    ``process <dag>.<node>[<part>]``)."""
    api = _trace()
    trace_id, _, flags = _parsed(traceparent, run_id)
    links = [
        api.Link(_span_context(trace_id, node_span_id(run_id, p, n), flags))
        for p, n in sorted(parents.items())
        if n
    ]
    span_id = node_span_id(run_id, f"{node}[{part}]" if part else node, attempt)
    with _tracer(span_id, trace_id).start_as_current_span(
        f"process {dag}.{node}" + (f"[{part}]" if part else ""),
        context=_context(trace_id, run_span_id(run_id), flags),
        kind=api.SpanKind.CONSUMER,
        links=links,
        attributes={
            "messaging.system": "rq",
            "messaging.operation.type": "process",
            "dagrq.dag": dag,
            "dagrq.node": node,
            "dagrq.run_id": run_id,
            "dagrq.attempt": attempt,
            **attributes,
        },
    ):
        yield


def current_trace_id() -> str | None:
    """The current span's trace id (32 hex digits), for log lines; None when not tracing."""
    if not _api:
        return None
    ctx = _api.get_current_span().get_span_context()
    return f"{ctx.trace_id:032x}" if ctx.is_valid else None
