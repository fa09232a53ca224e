"""Waiting on the world: signals and approvals, durable timers, sensors, sub-DAGs. Pure.

A waiting node holds no worker: its attempt *parks* (``park.lua``: the node ``waiting`` with
what it waits for, a due time in ``dagrq:timers`` when it has one) and a worker runs it again
when a signal comes, a timer is due or a child run ends. This module declares the kinds and
decides what they mean; :mod:`dagrq.jobs.waits` carries them out on a worker and
:mod:`dagrq.model.local` in-process. See docs/waits.md.

- ``dag.wait(name, type=..., after=[...], timeout=None, on_timeout="fail")``: no body; ends
  with the first signal whose value ``type`` accepts (``Run.signal``, ``dagrq signal``).
- ``dag.sleep(name, after=[...], duration=timedelta)``: ends ``duration`` after it is ready;
  any node's ``start_after=`` / ``not_before=`` (a run parameter) delays its start so.
- ``@dag.sensor(every=, timeout=)``: the body returns a value to end, ``None`` to be called
  again ``every`` later.
- ``dag.subdag(name, other_dag, params=..., map_over=..., result=...)``: ends with a child
  run's result (one child per item with ``map_over``).

Examples:
    >>> w = Waiting(kind="sensor", every_s=30, timeout_s=3600)
    >>> Waiting.parse(w.to_text()) == w
    True
    >>> timed_out(w, since=100.0, now=3700.0), timed_out(w, since=100.0, now=3699.0)
    (True, False)
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import NodeDefinitionError, SignalRefused
from .codec import type_adapter

#: a timer nearer than this is slept in the worker instead of parked (a park and a wake cost
#: two claims; the wake of a node parked under this long waits until it has been parked this
#: long, so its worker is done with the attempt that parked it)
PARK_MIN_S = 1.0
#: child runs of a mapped sub-DAG at once, unless ``max_children=`` says otherwise
DEFAULT_MAX_CHILDREN = 16

WaitKind = Literal["signal", "sleep", "sensor", "subdag"]
OnTimeout = Literal["fail", "skip", "value"]


class Waiting(BaseModel):
    """What a waiting node waits for, pinned in its :class:`~dagrq.model.plan.NodeSpec` (as
    JSON text, :meth:`to_text`).

    Attributes:
        kind: ``signal`` (``dag.wait``), ``sleep``, ``sensor`` or ``subdag``.
        type_name: a signal's value type, as shown (``Approval``).
        form: a signal's JSON schema (the web view's form), as JSON text.
        timeout_s: a signal's or sensor's timeout, counted from its first wait.
        on_timeout: what a signal's timeout does: ``fail``, ``skip``, or end with ``default``.
        default: the value (JSON) a timed-out signal ends with (``on_timeout="value"``).
        every_s: a sensor's time between pokes.
        dag: a sub-DAG's child DAG.
        result: the child's node whose output ends the sub-DAG node (default its one sink).
        map_over: a sub-DAG's parent whose items each get a child run.
        max_children: child runs of a mapped sub-DAG at once.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: WaitKind
    type_name: str | None = None
    form: str | None = None
    timeout_s: float | None = None
    on_timeout: OnTimeout = "fail"
    default: str | None = None
    every_s: float | None = None
    dag: str | None = None
    result: str | None = None
    map_over: str | None = None
    max_children: int | None = None

    def to_text(self) -> str:
        """Deterministic JSON, without the fields left unset (the plan's version)."""
        return json.dumps(self.model_dump(exclude_defaults=True), sort_keys=True)

    @staticmethod
    def parse(text: str) -> Waiting:
        """The inverse of :meth:`to_text` (parsed once per text)."""
        return _parse(text)

    def since_text(self, since: float, timeout_s: float | None = None) -> str:
        """``since 12:03:04 UTC, times out at 2026-12-04 12:03 UTC`` for a reason."""
        out = f"since {_clock(since)}"
        limit = self.timeout_s if timeout_s is None else timeout_s
        if limit is not None:
            out += f", times out at {_stamp(since + limit)}"
        return out


@lru_cache(maxsize=1024)
def _parse(text: str) -> Waiting:
    return Waiting(**json.loads(text))


def seconds(
    value: timedelta | float | int | None, what: str, *, minimum: float = 0.0
) -> float | None:
    """``value`` as seconds (a ``timedelta`` or a number), checked against ``minimum``.

    Raises:
        NodeDefinitionError: not a duration, or under ``minimum``.
    """
    if value is None:
        return None
    if isinstance(value, timedelta):
        out = value.total_seconds()
    elif isinstance(value, int | float) and not isinstance(value, bool):
        out = float(value)
    else:
        raise NodeDefinitionError(f"{what} {value!r} is no duration; give a timedelta or seconds")
    if out < minimum:
        raise NodeDefinitionError(f"{what} {value!r} is under {minimum:g} s; give more")
    return out


def timed_out(waiting: Waiting, since: float, now: float) -> bool:
    """Whether a wait or sensor that began at ``since`` has reached its timeout at ``now``."""
    return waiting.timeout_s is not None and now >= since + waiting.timeout_s


def start_due(
    start_after: float | None, not_before: str | None, ready: float, params: Mapping[str, Any]
) -> float | None:
    """When a node ready at ``ready`` may start (unix seconds), or None for now: ``ready +
    start_after``, and no sooner than the run parameter named ``not_before`` (a datetime, an
    ISO text or unix seconds; naive means UTC).

    Examples:
        >>> start_due(60.0, None, 1000.0, {})
        1060.0
        >>> start_due(None, "at", 1000.0, {"at": "1970-01-01T00:30:00"})
        1800.0
    """
    due = ready + start_after if start_after else None
    if not_before is not None and params.get(not_before) is not None:
        at = moment(params[not_before])
        due = at if due is None else max(due, at)
    return due


def moment(value: Any) -> float:
    """A datetime, ISO text or unix seconds as unix seconds (naive: UTC)."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    when = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def _clock(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%H:%M:%S UTC")


def _stamp(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def timer_reason(due: float) -> str:
    """Why a delayed node waits: ``timer: starts at 2026-12-02 12:03:04 UTC``."""
    return f"timer: starts at {_stamp(due)}"


def sensor_reason(name: str, pokes: int, since: float, due: float, waiting: Waiting) -> str:
    """Why a sensor waits: its pokes so far and the next one."""
    return (
        f"sensor {name}: poke {pokes} returned None, next poke at {_clock(due)}, "
        f"{waiting.since_text(since)}"
    )


def signal_reason(name: str, waiting: Waiting, since: float) -> str:
    """``signal approve (type Approval) since 12:03:04 UTC, times out at ...``."""
    return f"signal {name} (type {waiting.type_name}) {waiting.since_text(since)}"


def subdag_reason(waiting: Waiting, running: int, done: int, total: int, since: float) -> str:
    """Why a sub-DAG node waits: its child runs of DAG ``waiting.dag``."""
    if total == 1 and waiting.map_over is None:
        return f"child run of DAG {waiting.dag} {waiting.since_text(since, None)}"
    return (
        f"child runs of DAG {waiting.dag}: {done} of {total} ended, {running} running "
        f"{waiting.since_text(since, None)}"
    )


# ------------------------------------------------------------------ the node bodies
@dataclass(frozen=True)
class SignalBody:
    """The body of a ``dag.wait`` node: it has none; a signal's value is its output. Called
    (``run_local`` without a value for it) it refuses."""

    name: str
    type: Any
    waiting: Waiting

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.Signature([], return_annotation=self.type)

    def __call__(self) -> Any:
        """Refuse: a wait's value comes from a signal."""
        raise SignalRefused(
            f"wait node {self.name!r} has no value: it ends with a signal (Run.signal, "
            f"dagrq signal RUN {self.name} --value JSON); run_local takes signals={{...}}"
        )

    def accept(self, value: Any) -> Any:
        """``value`` validated against the wait's type (the value a signal delivers).

        Raises:
            SignalRefused: the type refuses it (the pydantic message, on one line).
        """
        try:
            return type_adapter(self.type).validate_python(value)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}" for e in exc.errors()
            )
            raise SignalRefused(
                f"signal to {self.name!r} refused: {problems} (type {self.waiting.type_name}); "
                "the node goes on waiting, send a valid value"
            ) from None


@dataclass(frozen=True)
class SleepBody:
    """The body of a ``dag.sleep`` node: nothing (its ``start_after`` is the sleep)."""

    name: str

    @property
    def __signature__(self) -> inspect.Signature:
        return inspect.Signature([], return_annotation=None)

    def __call__(self) -> None:
        """Nothing: the sleep is the node's ``start_after``."""
        return None


@dataclass(frozen=True)
class SubdagBody:
    """The body of a ``dag.subdag`` node: the child DAG and how a child's params are made.

    ``params`` is a dict, or a function whose parameters are parents (or run parameters) of
    the node, by name, returning the dict; with ``map_over``, the parent of that name
    arrives one item at a time. Without ``params``, an item that is a dict is the params."""

    name: str
    dag: Any
    waiting: Waiting
    params: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None = None
    inputs: tuple[str, ...] = field(default=())
    output: Any = Any

    @property
    def __signature__(self) -> inspect.Signature:
        """One keyword parameter per input (annotated, and defaulted, as the params
        function's)."""
        given = inspect.signature(self.params).parameters if callable(self.params) else {}
        empty = inspect.Parameter.empty
        params = [
            inspect.Parameter(
                p,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=given[p].annotation if p in given else empty,
                default=given[p].default if p in given else empty,
            )
            for p in self.inputs
        ]
        return inspect.Signature(params, return_annotation=self.output)

    def __call__(self, **inputs: Any) -> Any:
        """Refuse: child runs are made by the node's executor."""
        raise NotImplementedError("a sub-DAG node is run by its executor (see child_params)")

    def child_params(self, inputs: Mapping[str, Any], item: Any = None) -> dict[str, Any]:
        """The params of one child run: ``params`` called with the node's ``inputs`` (the
        mapped parent replaced by ``item``), or ``params`` itself, or ``item`` as a dict.

        Raises:
            NodeDefinitionError: the result is not a dict.
        """
        given = dict(inputs)
        if self.waiting.map_over is not None:
            given[self.waiting.map_over] = item
        if callable(self.params):
            made = self.params(**{k: given[k] for k in arg_names(self.params)})
        elif self.params is not None:
            made = dict(self.params)
        elif self.waiting.map_over is not None and isinstance(item, dict):
            made = item
        else:
            made = {}
        if not isinstance(made, Mapping):
            raise NodeDefinitionError(
                f"sub-DAG node {self.name!r}: params gave {type(made).__name__}, not a dict of "
                "the child's run parameters"
            )
        return dict(made)


def arg_names(fn: Callable[..., Any]) -> list[str]:
    """The parameter names of ``fn`` (a params function's: its inputs)."""
    return list(inspect.signature(fn).parameters)


def body_waiting(fn: Any) -> Waiting | None:
    """The :class:`Waiting` of a wait, sleep or sub-DAG node's body (None for a function)."""
    if isinstance(fn, SignalBody | SleepBody | SubdagBody):
        return fn.waiting if not isinstance(fn, SleepBody) else Waiting(kind="sleep")
    return None


def type_name(tp: Any) -> str:
    """A type as a person reads it: ``Approval``, ``bool``, ``list[int]``."""
    return tp.__name__ if isinstance(tp, type) else str(tp).replace("typing.", "")


def signal_form(tp: Any) -> str | None:
    """The JSON schema of a signal's type (the web view builds its form from it), or None
    when pydantic cannot describe it."""
    try:
        return json.dumps(type_adapter(tp).json_schema(), sort_keys=True)
    except Exception:  # an arbitrary class: the form falls back to JSON text
        return None


def encode_default(value: Any, tp: Any) -> str:
    """A timed-out signal's default value as JSON text (checked against the type).

    Raises:
        NodeDefinitionError: the type refuses it.
    """
    try:
        adapter = type_adapter(tp)
        return adapter.dump_json(adapter.validate_python(value)).decode()
    except (ValidationError, TypeError, ValueError) as exc:
        raise NodeDefinitionError(
            f"on_timeout value {value!r} is not a {type_name(tp)} ({exc.__class__.__name__}); "
            'give a value of the type, or on_timeout="fail" | "skip"'
        ) from None
