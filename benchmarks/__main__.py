"""``python -m benchmarks <name> [args]``: join-cost, map, compare, report, scale, commands,
lost-worker, startup, worker-cost, schedules, flow, cache, waits, observe,
objects, cluster."""

from __future__ import annotations

import sys

from . import (
    cache,
    cluster,
    commands,
    compare,
    flow,
    join_cost,
    lost_worker,
    map_scale,
    objects,
    observe,
    report,
    scale,
    schedules,
    startup,
    waits,
    worker_cost,
)

BENCHMARKS = {
    "join-cost": join_cost.main,
    "map": map_scale.main,
    "compare": compare.main,
    "report": report.main,
    "scale": scale.main,
    "commands": commands.main,
    "lost-worker": lost_worker.main,
    "startup": startup.main,
    "worker-cost": worker_cost.main,
    "schedules": schedules.main,
    "flow": flow.main,
    "cache": cache.main,
    "waits": waits.main,
    "observe": observe.main,
    "objects": objects.main,
    "cluster": cluster.main,
}


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        print(f"usage: python -m benchmarks {{{','.join(BENCHMARKS)}}} [args]", file=sys.stderr)
        return 2
    return BENCHMARKS[sys.argv[1]](sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
