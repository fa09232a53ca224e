"""Kill storms: 50 concurrent runs of a many-to-many DAG with a map, while whole workers, or
single processes of their pools, are SIGKILLed at random and started again. Every run must
end, succeed with the right result, and say how often bodies ran more than once."""

from __future__ import annotations

from pathlib import Path

import pytest

from .servers import RedisServer
from .storm import storm


@pytest.mark.parametrize(
    ("every", "seconds", "classes"),
    [
        ((0.3, 1.0), 20.0, ("pooled", "isolated", "pooled")),  # tight: a kill every 0.3-1 s
        ((1.0, 6.0), 25.0, ("isolated", "isolated", "pooled")),  # sparse: every 1-6 s
    ],
    ids=["tight", "sparse"],
)
def test_a_kill_storm_leaves_no_run_stuck_and_no_result_wrong(
    server: RedisServer,
    tmp_path: Path,
    every: tuple[float, float],
    seconds: float,
    classes: tuple[str, ...],
) -> None:
    report = storm(
        server.url,
        runs=50,
        seconds=seconds,
        every=every,
        classes=classes,
        lease_s=5,
        settle_s=90,
        log_dir=tmp_path / "logs",
    )
    print(report)
    assert report.kills >= 4
    assert report.stuck == []
    assert report.wrong == []
    assert report.succeeded == 50  # retry=20 outlasts every kill of the storm
    assert report.worker_exits == 0  # no worker quit on its own
    assert report.event_mismatches == []
    # bodies run at least once: every extra run is counted in status (attempts, executions)
    assert report.reexecuted_bodies <= report.reexecuted_reported
