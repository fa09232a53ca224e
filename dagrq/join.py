"""The server-side steps: each Lua script loaded once per connection, one typed wrapper each.

The scripts' headers (``dagrq/lua/*.lua``) are their contracts; these wrappers only lay out
KEYS and ARGV from a :class:`~dagrq.dag.DAG`'s specs and parse the replies.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import resources
from typing import Any
from weakref import WeakKeyDictionary

from rq.utils import utcformat

from . import keys
from .dag import NodeSpec

_SOURCES = {
    name: resources.files("dagrq").joinpath("lua", f"{name}.lua").read_text()
    for name in ("start", "complete")
}
_CACHE: WeakKeyDictionary[Any, dict[str, Any]] = WeakKeyDictionary()


def _script(connection: Any, name: str) -> Any:
    scripts = _CACHE.get(connection)
    if scripts is None:
        scripts = {n: connection.register_script(src) for n, src in _SOURCES.items()}
        _CACHE[connection] = scripts
    return scripts[name]


@dataclass(frozen=True)
class Started:
    """What ``start.lua`` answered.

    ``status`` is ``run`` (go ahead), ``done`` (already final: ``node_state`` says how),
    ``gone`` (no such run) or the run's state when it no longer runs.
    """

    status: str
    attempt: int = 0
    params_json: str | None = None
    outputs: dict[str, bytes | None] = field(default_factory=dict)
    node_state: str | None = None


@dataclass(frozen=True)
class Completed:
    """What ``complete.lua`` answered: the run's state, children fired and skipped."""

    run_state: str
    fired: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()


def start(connection: Any, run_id: str, spec: NodeSpec, ttl_s: int) -> Started:
    """Begin an attempt of ``spec`` in ``run_id``; read run params and parents' outputs."""
    parents = spec.data_parents
    reply = _script(connection, "start")(
        keys=[keys.run_key(run_id), keys.nodes_key(run_id)]
        + [keys.output_key(run_id, p) for p in parents],
        args=[spec.name, repr(time.time()), ttl_s],
    )
    status = _text(reply[0])
    if status == "done":
        return Started(status, node_state=_text(reply[1]))
    if status != "run":
        return Started(status)
    outputs = dict(zip(parents, reply[3:], strict=False))
    return Started(status, int(reply[1]), _text(reply[2]), outputs)


def complete(
    connection: Any,
    run_id: str,
    spec: NodeSpec,
    children: Sequence[NodeSpec],
    outcome: str,
    *,
    ttl_s: int,
    output: bytes = b"",
    error: str = "",
    traceback: str = "",
) -> Completed:
    """Record ``spec``'s final ``outcome`` and deliver one arrival to each child.

    ``children`` are the specs of ``spec.children``. Returns the children this call fired
    (enqueued, exactly once over all calls) and skipped (the caller completes those as
    ``skipped`` so the skip cascades).
    """
    keys_: list[str] = [
        keys.run_key(run_id),
        keys.nodes_key(run_id),
        keys.output_key(run_id, spec.name),
    ]
    args: list[Any] = [
        spec.name,
        outcome,
        output,
        error,
        traceback,
        repr(time.time()),
        ttl_s,
        spec.result_ttl,
        utcformat(datetime.now(UTC)),
        len(children),
    ]
    for child in children:
        keys_ += [
            keys.join_key(run_id, child.name),
            keys.job_key(run_id, child.name),
            keys.queue_key(child.queue_name),
        ]
        args += [child.name, len(child.parents), child.rule, keys.job_id(run_id, child.name)]
    reply = _script(connection, "complete")(keys=keys_, args=args)
    run_state = _text(reply[0])
    if run_state == "gone":
        return Completed("gone")
    n_fired = int(reply[1])
    names = tuple(_text(x) for x in reply[2:])
    return Completed(run_state, names[:n_fired], names[n_fired:])


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
