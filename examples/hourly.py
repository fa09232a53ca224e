"""A scheduled pipeline: every hour, summarise the hour that just ended.

    dagrq worker examples/hourly.py:dag           # fires it on the hour (one leader per DAG)
    dagrq schedules examples/hourly.py:dag        # last tick, its run, the next 3 fire times
    dagrq backfill examples/hourly.py:dag --from 2026-11-01T00:00 --to 2026-11-01T23:00 --dry-run
    dagrq run examples/hourly.py:dag              # by hand: the interval ends now

Each run gets the hour it covers as run parameters (`interval_start`, `interval_end`, ISO 8601
in the schedule's zone); a node asks for them by name. The events are generated from the
interval, so the example needs nothing but dagrq.
"""

from __future__ import annotations

import random
from datetime import datetime

from dagrq import DAG

dag = DAG("hourly", schedule="0 * * * *")  # the schedule named "default", in UTC
dag.schedule("30 6 * * 1-5", name="weekday_digest", timezone="Europe/Paris", params={"top": 3})


@dag.node
def events(interval_start: datetime, interval_end: datetime) -> list[dict[str, str]]:
    """The hour's events (made up from the interval, so each hour gets the same ones)."""
    rng = random.Random(int(interval_end.timestamp()))
    pages = ("/", "/docs", "/pricing", "/blog", "/signup")
    return [{"page": rng.choice(pages)} for _ in range(rng.randint(50, 200))]


@dag.node
def summary(events: list[dict[str, str]], interval_end: datetime, top: int = 5) -> str:
    counts: dict[str, int] = {}
    for event in events:
        counts[event["page"]] = counts.get(event["page"], 0) + 1
    ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:top]
    shown = ", ".join(f"{page} {n}" for page, n in ranked)
    return f"hour ending {interval_end:%Y-%m-%d %H:%M %Z}: {len(events)} events; {shown}"
