"""Node options and trigger rules: frozen pydantic models, checked at decoration time.

Examples:
    >>> NodeOptions(retry=3).retry
    Retry(max=3, backoff=[0])
    >>> NodeOptions(trigger=quorum(2)).rule
    'quorum:2'
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .flow import NAME, PRIORITY_MAX, RateLimit

Rule = Literal[
    "all_success",
    "all_done",
    "all_failed",
    "one_success",
    "one_failed",
    "one_done",
    "none_failed",
    "none_failed_min_one_success",
    "none_skipped",
    "all_skipped",
    "all_done_min_one_success",
    "always",
]

#: the trigger rules by name (``dagrq.quorum(k)`` is the one with an argument)
RULES: tuple[str, ...] = get_args(Rule)


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot name a node, or None when it can: a node's name is a parameter of
    its children (a Python identifier) and part of its RQ job id (ASCII letters, digits and
    ``_``: RQ refuses any other character).

    Examples:
        >>> name_problem("totals") is None
        True
        >>> name_problem("café")[:55]
        "node name 'café' has a character an RQ job id refuses ("
    """
    if not name.isidentifier():
        return f"node name {name!r} is not a Python identifier (children take it as a parameter)"
    if not name.isascii():
        odd = next(c for c in name if not c.isascii())
        return (
            f"node name {name!r} has a character an RQ job id refuses ({odd!r}): use ASCII "
            "letters, digits and '_'"
        )
    return None


class Quorum(BaseModel):
    """Fire once ``k`` parents succeeded; build it with :func:`quorum`."""

    model_config = ConfigDict(frozen=True, extra="forbid")
    k: Annotated[int, Field(ge=1)]

    def __str__(self) -> str:
        return f"quorum:{self.k}"


def quorum(k: int) -> Quorum:
    """The trigger rule "fire once ``k`` parents succeeded".

    Examples:
        >>> str(quorum(3))
        'quorum:3'
    """
    return Quorum(k=k)


class Retry(BaseModel):
    """How often a failing node is run again, and how long to wait between attempts.

    ``max`` extra attempts after the first; ``backoff`` seconds before each retry (one
    number for all, or a list whose last entry repeats), on RQ's own retry machinery.

    Examples:
        >>> Retry(max=3, backoff=[1, 5, 30]).backoff
        [1, 5, 30]
    """

    model_config = ConfigDict(frozen=True, extra="forbid")
    max: Annotated[int, Field(ge=0)]
    backoff: list[Annotated[int, Field(ge=0)]] = Field(default_factory=lambda: [0])

    def __init__(self, max: int, backoff: int | list[int] | None = None, **kw: Any) -> None:
        if backoff is None:
            backoff = [0]
        elif isinstance(backoff, int):
            backoff = [backoff]
        super().__init__(max=max, backoff=backoff, **kw)

    def __repr__(self) -> str:
        return f"Retry(max={self.max}, backoff={self.backoff})"


class NodeOptions(BaseModel):
    """Everything ``@dag.node(...)`` accepts; an unknown option is an error.

    Attributes:
        name: the node's name (default: the function's name); must be an identifier.
        queue: the RQ queue to run on (default: the DAG's queue, or the join's own
            aggregator queue for a join node).
        retry: extra attempts on failure, an int or :class:`Retry`.
        timeout: seconds before a running attempt is killed (RQ's job timeout).
        trigger: when the node runs, given its parents' outcomes (see docs/failures.md).
        result_ttl: seconds the node's stored output is kept (default: the DAG's ``ttl_s``).
        max_output_bytes: the largest output the node may store (default: the DAG's
            ``max_output_bytes``, 10 MiB); a larger one fails the node.
        after: order-only upstream nodes (no data passed).
        concurrency: at most this many attempts of the node run at once, over every run of
            the DAG (or per value of ``concurrency_key``); see docs/flow-control.md.
        concurrency_key: ``"param"`` (a run parameter) or ``"parent.field"`` (a field of a
            parent's output): ``concurrency`` applies to each value on its own.
        pool: a shared pool the node takes ``pool_slots`` slots of while it runs (pools are
            sized by ``dagrq pools set``; shared by every DAG).
        pool_slots: slots of ``pool`` one attempt takes (default 1).
        rate_limit: ``"N/s|m|h"`` starts of this node at most (every run, every worker), or
            ``"NAME:N/unit"`` for a limit shared by every node that names it.
        priority: higher first among waiting work of the same queue (added to the run's).
        cache: keep the output under a key of the node's code and inputs, and end a later
            attempt with the same key ``cached`` without running it (default: the DAG's
            ``cache=``); see docs/caching.md.
        cache_key: ``fn(**inputs) -> str`` replaces the inputs' part of the key (say a file's
            path and mtime instead of its contents).
        cache_ttl: how long an entry lives (a ``timedelta`` or seconds; default a week).
        version: the node's code version in the key, bumped by hand; default: a hash of the
            function's source.
        start_after: start this long after the node is ready (a ``timedelta`` or seconds):
            a durable timer, no worker waits (docs/waits.md).
        not_before: a run parameter (a datetime, ISO text or unix seconds): the node starts
            no sooner.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    queue: str | None = None
    retry: Retry | None = None
    timeout: Annotated[int, Field(gt=0)] | None = None
    trigger: Rule | Quorum = "all_success"
    result_ttl: Annotated[int, Field(gt=0)] | None = None
    max_output_bytes: Annotated[int, Field(gt=0)] | None = None
    after: tuple[str, ...] = ()
    concurrency: Annotated[int, Field(ge=1)] | None = None
    concurrency_key: str | None = None
    pool: str | None = None
    pool_slots: Annotated[int, Field(ge=1)] = 1
    rate_limit: str | None = None
    priority: Annotated[int, Field(ge=-PRIORITY_MAX, le=PRIORITY_MAX)] = 0
    cache: bool | None = None
    cache_key: Callable[..., Any] | None = None
    cache_ttl: timedelta | None = None
    version: str | None = None
    start_after: timedelta | None = None
    not_before: str | None = None

    @field_validator("cache_ttl", "start_after", mode="before")
    @classmethod
    def _ttl_seconds(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return timedelta(seconds=value)
        return value

    @field_validator("cache_ttl")
    @classmethod
    def _positive_ttl(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() < 1:
            raise ValueError(f"cache_ttl {value} is under a second; give a timedelta >= 1 s")
        return value

    @field_validator("start_after")
    @classmethod
    def _not_negative(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() < 0:
            raise ValueError(f"start_after {value} is negative; give a timedelta >= 0")
        return value

    @field_validator("not_before")
    @classmethod
    def _param_name(cls, value: str | None) -> str | None:
        if value is not None and not value.isidentifier():
            raise ValueError(f"not_before {value!r} is no run parameter name")
        return value

    @field_validator("rate_limit")
    @classmethod
    def _rate(cls, value: str | None) -> str | None:
        return None if value is None else str(RateLimit.parse(value))

    @field_validator("pool")
    @classmethod
    def _pool_name(cls, value: str | None) -> str | None:
        if value is not None and not NAME.match(value):
            raise ValueError(f"pool name {value!r}: use letters, digits, '_', '.' and '-'")
        return value

    @field_validator("concurrency_key")
    @classmethod
    def _key(cls, value: str | None) -> str | None:
        if value is not None and not all(p.isidentifier() for p in value.split(".", 1)):
            raise ValueError(
                f"concurrency_key {value!r} is not 'param' or 'parent.field' (identifiers)"
            )
        return value

    @field_validator("retry", mode="before")
    @classmethod
    def _int_retry(cls, value: Any) -> Any:
        if isinstance(value, int) and not isinstance(value, bool):
            return Retry(max=value)
        return value

    @field_validator("name")
    @classmethod
    def _identifier(cls, value: str | None) -> str | None:
        problem = None if value is None else name_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("after", mode="before")
    @classmethod
    def _after_list(cls, value: Any) -> Any:
        return (value,) if isinstance(value, str) else tuple(value)

    @property
    def rule(self) -> str:
        """The trigger rule as one string, as stored in the plan: ``all_done``, ``quorum:2``."""
        return str(self.trigger)


def option_error(dag: str, node: str, exc: ValidationError, options: Mapping[str, Any]) -> str:
    """One line for an option ``@dag.node`` refuses: the node, the option, what is wrong and
    the fix (the known options for an unknown one; the closest rule for a misspelt trigger).

    Examples:
        >>> try:
        ...     NodeOptions(trigger="all_sucess")
        ... except ValidationError as exc:
        ...     option_error("d", "report", exc, {"trigger": "all_sucess"})[:88]
        "@d.node on 'report': trigger 'all_sucess' is no trigger rule; did you mean 'all_success'"
    """
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "options"
    head = f"@{dag}.node on {node!r}"
    trigger = options.get("trigger")
    if where.startswith("trigger") and isinstance(trigger, str):
        close = difflib.get_close_matches(trigger, RULES, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return (
            f"{head}: trigger {trigger!r} is no trigger rule; {hint}(rules: "
            f"{', '.join(RULES)}, or dagrq.quorum(k))"
        )
    if err["type"] == "extra_forbidden":
        close = difflib.get_close_matches(where, list(NodeOptions.model_fields), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        return f"{head}: option {where!r} is unknown; {hint}known options: " + ", ".join(
            NodeOptions.model_fields
        )
    fix = OPTION_FIXES.get(where.split(".")[0], "")
    return f"{head}: option {where!r} is not valid ({err['msg']}){fix}"


#: how to give an option right, added to its error
OPTION_FIXES = {
    "retry": "; give a number of retries, or dagrq.Retry(max=3, backoff=[1, 5, 30])",
    "timeout": "; give whole seconds, more than 0",
    "result_ttl": "; give whole seconds, more than 0",
    "after": "; give a node's name or a list of them",
}
