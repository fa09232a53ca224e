"""Event-triggered runs, pure: ``DAG(triggers=[on_event(name, params=...)], emits=name)``.

An event is a name and JSON data, appended to one bounded Redis stream (``dagrq emit``,
:func:`dagrq.emit`, or a run of a DAG with ``emits=`` that succeeded). Every DAG subscribed to
the name starts one run per event (exactly once, whichever worker reads it); see docs/waits.md.

Examples:
    >>> t = on_event("orders.uploaded", params=lambda e: {"day": e.data["day"]})
    >>> t.params_for(Event("orders.uploaded", {"day": "2026-12-01"}, "1-0"))
    {'day': '2026-12-01'}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..errors import DAGError

#: an event's name: letters, digits, '_', '.', '-' and ':' (``orders.uploaded``)
EVENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.:-]{0,199}$")


@dataclass(frozen=True)
class Event:
    """One event as a trigger's ``params`` function receives it.

    Attributes:
        name: the event's name.
        data: its data (any JSON value).
        id: its id in the event stream (``<ms>-<n>``).
        key: the dedup key it was emitted with, if any.
    """

    name: str
    data: Any
    id: str
    key: str | None = None


@dataclass(frozen=True)
class Trigger:
    """A DAG's subscription to events named ``name``: each starts one run, with run params
    ``params(event)`` (default: the event's data when it is a dict, else none)."""

    name: str
    params: Callable[[Event], Mapping[str, Any]] | None = None

    def params_for(self, event: Event) -> dict[str, Any]:
        """The run params for ``event``.

        Raises:
            DAGError: ``params`` gave no dict.
        """
        if self.params is None:
            return dict(event.data) if isinstance(event.data, Mapping) else {}
        made = self.params(event)
        if not isinstance(made, Mapping):
            raise DAGError(
                f"trigger on {self.name!r}: params gave {type(made).__name__}, not a dict of "
                "run parameters"
            )
        return dict(made)


def check_name(name: Any, what: str = "event") -> str:
    """``name`` if it can name an event.

    Raises:
        DAGError: it cannot (the rule is in the message).
    """
    if not isinstance(name, str) or not EVENT_NAME.match(name):
        raise DAGError(
            f"{what} name {name!r} is not allowed: use letters, digits, '_', '.', '-' and ':' "
            "(up to 200)"
        )
    return name


def on_event(name: str, *, params: Callable[[Event], Mapping[str, Any]] | None = None) -> Trigger:
    """Subscribe a DAG to events named ``name`` (``DAG(triggers=[on_event(...)])``): each
    event starts one run, with run params ``params(event)``.

    Raises:
        DAGError: a name that cannot name an event.
    """
    return Trigger(check_name(name), params)
