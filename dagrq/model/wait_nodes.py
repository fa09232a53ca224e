"""The declarations of waiting nodes, mixed into :class:`~dagrq.model.dag.DAG`:
``dag.wait``, ``dag.sleep``, ``@dag.sensor``, ``dag.subdag`` (what they mean:
:mod:`dagrq.model.waits`, docs/waits.md)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import timedelta
from typing import Any, cast

from ..errors import NodeDefinitionError
from .node import Node
from .waits import (
    DEFAULT_MAX_CHILDREN,
    PARK_MIN_S,
    OnTimeout,
    SignalBody,
    SleepBody,
    SubdagBody,
    Waiting,
    arg_names,
    body_waiting,
    encode_default,
    seconds,
    signal_form,
    type_name,
)


class WaitingNodes:
    """``dag.wait``, ``dag.sleep``, ``@dag.sensor`` and ``dag.subdag``."""

    name: str
    node: Any

    def wait(
        self,
        name: str,
        *,
        type: Any = Any,
        after: Sequence[str] | str = (),
        timeout: timedelta | float | None = None,
        on_timeout: Any = "fail",
        **options: Any,
    ) -> Node[Any, Any]:
        """Declare a node with no body that ends with the first signal whose value ``type``
        accepts (``Run.signal(name, value)``, ``dagrq signal RUN NAME --value JSON``, the web
        view's form); its output is that value. It waits after ``after`` (node names), holding
        no worker. ``timeout`` (from the moment it starts waiting) ends it by ``on_timeout``:
        ``"fail"``, ``"skip"``, or any other value: the output it ends with.

        Raises:
            NodeDefinitionError: a timeout under a second, or a default the type refuses.
        """
        limit = seconds(timeout, f"wait {name!r}: timeout", minimum=PARK_MIN_S)
        rule: OnTimeout = "fail" if on_timeout == "fail" else "skip"
        default = None
        if on_timeout not in ("fail", "skip"):
            rule, default = "value", encode_default(on_timeout, type)
        waiting = Waiting(
            kind="signal",
            type_name=type_name(type),
            form=signal_form(type),
            timeout_s=limit,
            on_timeout=rule,
            default=default,
        )
        body = SignalBody(name, type, waiting)
        return self.node(name=name, after=after, **options)(body)  # type: ignore[no-any-return]

    def sleep(
        self,
        name: str,
        *,
        after: Sequence[str] | str = (),
        duration: timedelta | float,
        **options: Any,
    ) -> Node[Any, Any]:
        """Declare a node that ends ``duration`` after it is ready (its parents ``after``
        done), output None: a durable timer in Redis, no worker waits.

        Raises:
            NodeDefinitionError: a negative duration.
        """
        seconds(duration, f"sleep {name!r}: duration")
        return self.node(  # type: ignore[no-any-return]
            name=name, after=after, start_after=duration, **options
        )(SleepBody(name))

    def sensor(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        every: timedelta | float = 60.0,
        timeout: timedelta | float | None = None,
        **options: Any,
    ) -> Any:
        """Declare a sensor: its body returns a value to end, or None to be called again
        ``every`` later (nothing holds a worker in between, Airflow's reschedule mode); past
        ``timeout`` (from its first poke) it fails. Each poke is an attempt: its log and
        timing show in ``dagrq logs``. ``options`` are :meth:`node`'s.

        Raises:
            NodeDefinitionError: ``every`` or ``timeout`` under a second.
        """
        waiting = Waiting(
            kind="sensor",
            every_s=seconds(every, "sensor: every", minimum=PARK_MIN_S),
            timeout_s=seconds(timeout, "sensor: timeout", minimum=PARK_MIN_S),
        )
        register = self.node(**options)

        def sensing(func: Callable[..., Any]) -> Node[Any, Any]:
            made: Node[Any, Any] = register(func)
            made.waiting = waiting
            return made

        return sensing(fn) if fn is not None else sensing

    def subdag(
        self,
        name: str,
        other_dag: Any,
        *,
        params: Mapping[str, Any] | Callable[..., Mapping[str, Any]] | None = None,
        after: Sequence[str] | str = (),
        map_over: str | None = None,
        result: str | None = None,
        max_children: int = DEFAULT_MAX_CHILDREN,
        output: Any = Any,
        **options: Any,
    ) -> Node[Any, Any]:
        """Declare a node that runs ``other_dag`` as a child run and ends with its result:
        the output of its node ``result`` (default: its one sink). ``params`` are the child's
        run parameters: a dict, or a function whose parameters name parents (or run
        parameters) of this node and returns the dict. ``map_over`` a parent's list runs one
        child per item (``max_children`` at once; the item reaches ``params`` under the
        parent's name) and ends with the list of results, in item order. A failed or canceled
        child fails the node (:class:`~dagrq.errors.ChildRunFailed`); canceling the run
        cancels its children.

        Raises:
            NodeDefinitionError: ``max_children`` below 1, or ``other_dag`` is no DAG.
        """
        if not hasattr(other_dag, "plan") or not hasattr(other_dag, "sinks"):
            raise NodeDefinitionError(f"sub-DAG {name!r}: {other_dag!r} is no dagrq.DAG")
        if not isinstance(max_children, int) or max_children < 1:
            raise NodeDefinitionError(f"sub-DAG {name!r}: max_children must be >= 1")
        inputs = arg_names(params) if callable(params) else []
        if map_over is not None and map_over not in inputs:
            inputs.append(map_over)
        waiting = Waiting(
            kind="subdag",
            dag=other_dag.name,
            result=result,
            map_over=map_over,
            max_children=max_children if map_over is not None else None,
        )
        body = SubdagBody(name, other_dag, waiting, params, tuple(inputs), output)
        return self.node(name=name, after=after, **options)(body)  # type: ignore[no-any-return]


def pinned_waiting(node: Node[Any, Any], spec: Any, run_params: set[str]) -> Any:
    """``spec`` (a :class:`~dagrq.model.plan.NodeSpec`) with what ``node`` waits for pinned:
    its :class:`Waiting` as text, its ``start_after`` and ``not_before``.

    Raises:
        NodeDefinitionError: a waiting node that is mapped or cached, a ``not_before`` that
            names no run parameter, a sub-DAG's ``result`` that is no node of its DAG (or no
            ``result`` for a DAG of several sinks), a ``map_over`` that is no parent.
    """
    where = f"node {node.name!r}"
    opts = node.options
    waiting: Waiting | None = node.waiting or body_waiting(node.fn)
    if opts.not_before is not None and opts.not_before not in run_params:
        raise NodeDefinitionError(
            f"{where}: not_before={opts.not_before!r} names no run parameter of the DAG; add "
            f"a parameter {opts.not_before}: datetime to a node, or drop not_before"
        )
    if waiting is not None and node.map_over is not None:
        raise NodeDefinitionError(
            f"{where}: a {waiting.kind} cannot be a mapped node; use dag.subdag(map_over=...)"
        )
    if waiting is not None and spec.cache:
        raise NodeDefinitionError(f"{where}: a {waiting.kind} node cannot be cached; drop cache=")
    if waiting is not None and waiting.kind == "subdag":
        _check_subdag(node, waiting, spec)
    after = opts.start_after.total_seconds() if opts.start_after is not None else None
    return replace(
        spec,
        wait=waiting.to_text() if waiting is not None else None,
        start_after=after or None,
        not_before=opts.not_before,
    )


def _check_subdag(node: Node[Any, Any], waiting: Waiting, spec: Any) -> None:
    body = cast(SubdagBody, node.fn)
    where = f"sub-DAG node {node.name!r}"
    child = body.dag
    child.validate()
    if waiting.result is not None and waiting.result not in child.specs:
        raise NodeDefinitionError(
            f"{where}: result={waiting.result!r} is no node of DAG {child.name!r} "
            f"(nodes: {', '.join(child.specs)})"
        )
    if waiting.result is None and len(child.sinks) != 1:
        raise NodeDefinitionError(
            f"{where}: DAG {child.name!r} has {len(child.sinks)} sinks "
            f"({', '.join(child.sinks)}); name the one that ends the node with result="
        )
    if waiting.map_over is not None and waiting.map_over not in spec.data_parents:
        raise NodeDefinitionError(f"{where}: map_over={waiting.map_over!r} is no node of the DAG")


def call_waiting(
    node: Node[Any, Any],
    spec: Any,
    codec: Any,
    inputs: Callable[[], Mapping[str, Any]],
    signals: Mapping[str, Any],
    params: Mapping[str, Any],
) -> Any:
    """One waiting node run in this process (``run_local``), as a worker would but waiting
    here: a delayed start sleeps, a sensor pokes every ``every`` until it returns a value, a
    wait takes its value from ``signals`` (none: its timeout rule at once, or a failure saying
    so), a sub-DAG runs its children with ``run_local``. Returns an
    :class:`~dagrq.model.call.Outcome`."""
    import time

    from ..errors import ChildRunFailed, RunFailed, WaitTimedOut
    from .call import Outcome, call
    from .waits import start_due, timed_out

    due = start_due(spec.start_after, spec.not_before, time.time(), params)
    if due is not None:
        time.sleep(max(0.0, due - time.time()))
    waiting = Waiting.parse(spec.wait) if spec.wait else None
    if waiting is None or waiting.kind == "sleep":
        return call(node, spec, codec, inputs)
    if waiting.kind == "sensor":
        since = time.time()
        while (outcome := call(node, spec, codec, inputs)).state == "again":
            if timed_out(waiting, since, time.time() + (waiting.every_s or 0)):
                return Outcome("failed", error=WaitTimedOut(f"sensor {spec.name!r} timed out"))
            time.sleep(waiting.every_s or PARK_MIN_S)
        return outcome
    if waiting.kind == "signal":
        return _signalled(node, spec, codec, waiting, signals)
    sub = cast(SubdagBody, node.fn)
    given = dict(inputs())
    items = [None] if waiting.map_over is None else list(given.get(waiting.map_over) or [])
    results = []
    for item in items:
        try:
            done = sub.dag.run_local(**sub.child_params(given, item))
        except RunFailed as exc:
            why = ChildRunFailed(f"child run of DAG {sub.dag.name!r} failed: {exc}")
            return Outcome("failed", error=why)
        results.append(done.get(waiting.result or sub.dag.sinks[0]))
    value = results if waiting.map_over is not None else results[0]
    return call(_constant(node, value), spec, codec, dict)


def _signalled(
    node: Node[Any, Any], spec: Any, codec: Any, waiting: Waiting, signals: Mapping[str, Any]
) -> Any:
    """A wait node in-process: its value from ``signals``, else its timeout rule at once."""
    from ..errors import SignalRefused
    from .call import Outcome, call

    body = cast(SignalBody, node.fn)
    if spec.name in signals:
        try:
            value = body.accept(signals[spec.name])
        except SignalRefused as exc:
            return Outcome("failed", error=exc)
        return call(_constant(node, value), spec, codec, dict)
    if waiting.timeout_s is not None and waiting.on_timeout == "skip":
        return Outcome("skipped", reason=f"wait {spec.name!r} timed out: no signal")
    if waiting.timeout_s is not None and waiting.on_timeout == "value":
        value = codec.loads((waiting.default or "null").encode(), body.type)
        return call(_constant(node, value), spec, codec, dict)
    fix = f"run_local(signals={{{spec.name!r}: value}})"
    return Outcome("failed", error=SignalRefused(f"wait {spec.name!r} got no signal; {fix}"))


def _constant(node: Node[Any, Any], value: Any) -> Node[Any, Any]:
    """``node`` with a body that returns ``value`` (its output checked and stored as usual)."""
    from .options import NodeOptions

    def body() -> Any:
        return value

    body.__annotations__ = {"return": node.signature.return_annotation}
    made: Node[Any, Any] = Node(body, NodeOptions(name=node.name))
    return made
