"""A DAG's schedules: when its runs start themselves (pure: no Redis, no clock but the one given).

A :class:`Schedule` is a cron expression (5 fields, or 6 with seconds first, parsed by
``croniter``) or an interval (``every=``), in a time zone, with the run parameters its runs get,
an overlap policy and a catch-up window. :meth:`Schedule.ticks` lists its fire times in a range;
:func:`tick_params` gives a run of one tick its logical time.

Time zones and DST (the rule of cronie, Vixie cron's successor): a schedule that names its hours
(``30 2 * * *``) fires once per wall-clock time: on the day a zone skips 02:30 it fires at the
first valid instant after (03:00), on the day 02:30 happens twice it fires at the first. A
schedule whose hour field is a wildcard (``*/15 * * * *``) and an interval fire by real time,
through both passes of a repeated hour.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, field_validator, model_validator

from ..errors import DAGError

Overlap = Literal["skip", "buffer_one", "allow", "cancel_other"]
OVERLAPS: tuple[str, ...] = ("skip", "buffer_one", "allow", "cancel_other")
#: run parameters a scheduled run carries (a node asks for any of them by name)
LOGICAL_PARAMS = ("logical_time", "interval_start", "interval_end")
#: a tick that fell due while no leader ran fires late when it is at most this old
MISFIRE_GRACE_S = 60.0
_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
_FIELDS = ("minute", "hour", "day of month", "month", "day of week")
_FIELDS_S = ("second", *_FIELDS)


class Schedule(BaseModel):
    """One schedule of a DAG (see :meth:`dagrq.DAG.schedule`)."""

    model_config = ConfigDict(frozen=True, arbitrary_types_allowed=True)

    dag: str
    name: str
    cron: str | None = None
    every: timedelta | None = None
    params: dict[str, Any] = {}
    timezone: str = "UTC"
    jitter: timedelta | None = None
    overlap: Overlap = "skip"
    catchup: bool | timedelta = False
    start: datetime | None = None
    end: datetime | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"schedule name {value!r} is not allowed: use ASCII letters, digits, '_', '.' "
                "and '-' (it is part of Redis keys)"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give one of cron= (a cron string) or every= (a timedelta)")
        if self.every is not None and self.every.total_seconds() < 1:
            raise ValueError(f"every={self.every!r} is under a second: give at least 1 s")
        if self.cron is not None:
            cron_error(self.cron)
        try:
            ZoneInfo(self.timezone)
        except (ZoneInfoNotFoundError, ValueError):
            zone = self.timezone
            why = f"timezone {zone!r} is not an IANA zone (e.g. 'Europe/Paris')"
            raise ValueError(why) from None
        if self.jitter is not None and self.jitter < timedelta(0):
            raise ValueError("jitter must not be negative")
        if isinstance(self.catchup, timedelta) and self.catchup <= timedelta(0):
            raise ValueError("catchup must be False, True or a positive timedelta")
        return self

    # ----------------------------------------------------------------- reading
    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return ZoneInfo(self.timezone)

    @property
    def key(self) -> str:
        """``<dag>:<name>``: the schedule's identity across DAGs."""
        return f"{self.dag}:{self.name}"

    @property
    def catchup_s(self) -> float:
        """How old a missed tick may be and still fire: the misfire grace, or the catch-up
        window when longer (``True``: any age)."""
        if self.catchup is True:
            return float("inf")
        if isinstance(self.catchup, timedelta):
            return max(MISFIRE_GRACE_S, self.catchup.total_seconds())
        return MISFIRE_GRACE_S

    def describe(self) -> str:
        """``cron '0 3 * * *' Europe/Paris`` or ``every 0:15:00``."""
        what = f"cron {self.cron!r}" if self.cron is not None else f"every {self.every}"
        return f"{what} {self.timezone}"

    def ticks(self, after: datetime, until: datetime) -> Iterator[datetime]:
        """The fire times in ``(after, until]``, oldest first, aware in the schedule's zone,
        within ``start``/``end``. Jitter is not in them (see :func:`jitter_s`)."""
        zone = self.zone
        after, until = after.astimezone(zone), until.astimezone(zone)
        if self.start is not None:
            after = max(after, _aware(self.start, zone) - timedelta(microseconds=1))
        if self.end is not None:
            until = min(until, _aware(self.end, zone))
        if self.every is not None:
            yield from self._intervals(after, until)
            return
        yield from self._cron_ticks(after, until)

    def _intervals(self, after: datetime, until: datetime) -> Iterator[datetime]:
        assert self.every is not None
        step = self.every.total_seconds()
        anchor = _aware(self.start, self.zone) if self.start is not None else _EPOCH
        n = int((after - anchor).total_seconds() // step) + 1
        while (tick := anchor + timedelta(seconds=n * step)) <= until:
            if tick > after:
                yield tick.astimezone(self.zone)
            n += 1

    def _cron_ticks(self, after: datetime, until: datetime) -> Iterator[datetime]:
        from croniter import croniter

        assert self.cron is not None
        fields = self.cron.split()
        six = len(fields) == 6
        hours = fields[2 if six else 1]
        fixed_hours = not hours.startswith("*")  # names its hours: once per wall-clock time
        found = croniter(self.cron, after, second_at_beginning=six)
        seen: set[tuple[int, ...]] = set()
        while (tick := found.get_next(datetime)) <= until:
            wall = (tick.year, tick.month, tick.day, tick.hour, tick.minute, tick.second)
            if fixed_hours and wall in seen:
                continue  # the second pass of a repeated hour: once per wall-clock time
            seen.add(wall)
            yield tick


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _aware(moment: datetime, zone: ZoneInfo) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=zone)


def cron_error(expression: str) -> None:
    """Check a cron string (5 fields, or 6 with seconds first).

    Raises:
        ValueError: naming the field that is wrong and its allowed range.
    """
    from croniter import croniter

    parts = expression.split()
    if len(parts) not in (5, 6):
        raise ValueError(
            f"cron {expression!r} has {len(parts)} fields: give 5 (minute hour day month "
            "weekday) or 6 (second first)"
        )
    names = _FIELDS_S if len(parts) == 6 else _FIELDS
    blank = ["*"] * len(parts)
    for i, (part, field) in enumerate(zip(parts, names, strict=True)):
        probe = " ".join([*blank[:i], part, *blank[i + 1 :]])
        if not croniter.is_valid(probe, second_at_beginning=len(parts) == 6):
            raise ValueError(f"cron {expression!r}: the {field} field {part!r} is not valid")
    if not croniter.is_valid(expression, second_at_beginning=len(parts) == 6):
        raise ValueError(f"cron {expression!r} is not valid")


def make_schedule(dag: str, taken: set[str], **fields: Any) -> Schedule:
    """A validated :class:`Schedule` of ``dag`` (``taken``: names already used).

    Raises:
        DAGError: one line naming the DAG, the schedule and what is wrong.
    """
    from pydantic import ValidationError

    name = fields.get("name") or _default_name(fields)
    fields["name"] = name
    if name in taken:
        raise DAGError(f"DAG {dag!r}: two schedules named {name!r}: give each its own name=")
    try:
        return Schedule(dag=dag, **fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        message = str(first["msg"]).removeprefix("Value error, ")
        field = f" ({where})" if where and where not in message else ""
        raise DAGError(f"DAG {dag!r}, schedule {name!r}{field}: {message}") from None


def _default_name(fields: dict[str, Any]) -> str:
    if fields.get("cron"):
        spelled = str(fields["cron"]).replace("*", "x")
        return "cron_" + re.sub(r"[^A-Za-z0-9]+", "_", spelled).strip("_")
    every = fields.get("every")
    if isinstance(every, timedelta):
        return f"every_{int(every.total_seconds())}s"
    return "schedule"


def tick_params(schedule: Schedule, tick: datetime) -> dict[str, str]:
    """The logical-time parameters of the run of ``tick``: ``logical_time`` (the tick),
    ``interval_start`` (the previous tick) and ``interval_end`` (the tick), ISO 8601 with the
    schedule's zone offset."""
    start = previous_tick(schedule, tick)
    return {
        "logical_time": tick.isoformat(),
        "interval_start": start.isoformat(),
        "interval_end": tick.isoformat(),
    }


def previous_tick(schedule: Schedule, tick: datetime) -> datetime:
    """The tick before ``tick`` (for an interval, ``tick - every``)."""
    if schedule.every is not None:
        return tick - schedule.every
    from croniter import croniter

    assert schedule.cron is not None
    six = len(schedule.cron.split()) == 6
    found = croniter(schedule.cron, tick.astimezone(schedule.zone), second_at_beginning=six)
    before: datetime = found.get_prev(datetime)
    return before


def jitter_s(schedule: Schedule, tick: datetime) -> float:
    """A delay in ``[0, jitter)`` for ``tick``, the same for every leader (from the tick)."""
    if schedule.jitter is None or not schedule.jitter.total_seconds():
        return 0.0
    import hashlib

    digest = hashlib.sha256(f"{schedule.key}@{tick.timestamp()}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64 * schedule.jitter.total_seconds()


def logical_defaults(now: datetime) -> dict[str, str]:
    """The logical-time parameters of a run started by hand: all three are its start."""
    stamp = now.astimezone(UTC).isoformat()
    return dict.fromkeys(LOGICAL_PARAMS, stamp)
