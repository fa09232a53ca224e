"""Kill storms: many concurrent runs while workers are SIGKILLed at random (a whole worker
with every process under it, or one process of its pool, which its supervisor replaces) and
started again, then a check that every run ended with the right result.

The tests run small storms; a long one runs by hand:

    python -m tests.reliability.storm --url redis://127.0.0.1:6379/0 --runs 200 --seconds 300
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from dagrq import Run, loader
from dagrq.store import runkeys
from dagrq.workers.processes import worker_argv

PIPELINE = str(Path(__file__).resolve().parents[1] / "pipelines" / "storm.py") + ":dag"


@dataclass
class StormReport:
    """What a storm did and what it left."""

    runs: int = 0
    kills: int = 0
    succeeded: int = 0
    failed: int = 0
    stuck: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    reexecuted_bodies: int = 0
    reexecuted_reported: int = 0
    event_mismatches: list[str] = field(default_factory=list)
    seconds_to_end_after_storm: float = 0.0
    worker_exits: int = 0


#: ``dagrq worker`` options of each kind of slot
KINDS = {"pooled": ("-c", "2"), "isolated": ("--isolate", "-c", "1")}


class Slots:
    """Worker processes in fixed slots; a killed slot is started again at once."""

    def __init__(
        self, url: str, classes: list[str], lease_s: int, log_dir: Path, pipeline: str = PIPELINE
    ) -> None:
        self.url, self.classes, self.lease_s, self.log_dir = url, classes, lease_s, log_dir
        self.pipeline = pipeline
        self.env = {**os.environ, "DAGRQ_URL": url, "DAGRQ_LOG": "WARNING"}
        self.procs: list[subprocess.Popen[bytes]] = []
        self.exits = 0
        log_dir.mkdir(parents=True, exist_ok=True)
        for slot in range(len(classes)):
            self.procs.append(self._start(slot))

    def _start(self, slot: int) -> subprocess.Popen[bytes]:
        argv = worker_argv(self.pipeline, *KINDS[self.classes[slot]], "--lease", str(self.lease_s))
        with open(self.log_dir / f"slot-{slot}.log", "ab") as out:
            return subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT, env=self.env)

    def kill(self, slot: int, rng: random.Random, whole: bool = True) -> list[int]:
        """SIGKILL the slot's worker with every process under it (pool processes, horses,
        RQ's scheduler), then start the slot again; or (not ``whole``) one of its pool's
        processes (with what runs under it), which the worker itself replaces. Returns the
        pids killed."""
        proc = self.procs[slot]
        try:
            top = psutil.Process(proc.pid)
            tree = [*top.children(recursive=True), top]
            if not whole and top.children():
                victim = rng.choice(top.children())
                tree = [*victim.children(recursive=True), victim]
                for p in tree:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.send_signal(signal.SIGKILL)
                return [p.pid for p in tree]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(signal.SIGKILL)
        proc.wait()
        self.procs[slot] = self._start(slot)
        return [p.pid for p in tree]

    def check(self) -> None:
        """Count and restart slots whose worker exited on its own (it must not)."""
        for slot, proc in enumerate(self.procs):
            if proc.poll() is not None:
                self.exits += 1
                self.procs[slot] = self._start(slot)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                for p in psutil.Process(proc.pid).children(recursive=True):
                    p.kill()
                proc.kill()
                proc.wait()


def storm(
    url: str,
    *,
    runs: int = 50,
    seconds: float = 20.0,
    every: tuple[float, float] = (0.3, 1.5),
    classes: tuple[str, ...] = ("pooled", "isolated", "pooled"),
    lease_s: int = 5,
    settle_s: float = 120.0,
    log_dir: Path = Path("/tmp/dagrq-storm"),
    seed: int = 1,
) -> StormReport:
    """Submit ``runs`` runs, kill a random worker every ``every`` seconds for ``seconds``,
    then wait up to ``settle_s`` for every run to end and check each result."""
    rng = random.Random(seed)
    conn = redis.Redis.from_url(url)
    dag = loader.load(PIPELINE)
    report = StormReport(runs=runs)
    slots = Slots(url, list(classes), lease_s, log_dir)
    try:
        handles = [dag.submit(conn, seed=rng.randrange(10**6)) for _ in range(runs)]
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(rng.uniform(*every))
            slots.check()
            slots.kill(rng.randrange(len(classes)), rng, whole=rng.random() < 0.5)
            report.kills += 1
        storm_over = time.monotonic()
        deadline = storm_over + settle_s
        waiting = list(handles)
        while waiting and time.monotonic() < deadline:
            slots.check()
            waiting = [
                r for r in waiting if conn.hget(runkeys.run_key(r.id), "state") == b"running"
            ]
            time.sleep(0.2)
        report.seconds_to_end_after_storm = round(time.monotonic() - storm_over, 1)
        report.stuck = [r.id for r in waiting]
        _judge(conn, dag, handles, report)
        report.worker_exits = slots.exits
    finally:
        slots.stop()
    return report


def _judge(conn: redis.Redis, dag: Any, handles: list[Run], report: StormReport) -> None:
    for run in handles:
        status = run.status()
        if status.state == "succeeded":
            report.succeeded += 1
            if run.results() != dag.run_local(**status.params):
                report.wrong.append(run.id)
        elif status.state != "running":
            report.failed += 1
        executions = sum(
            int(v) for k in conn.scan_iter(f"test:exec:{run.id}:*") if (v := conn.get(k))
        )
        report.reexecuted_bodies += max(0, executions - _bodies(dag, run))
        report.reexecuted_reported += status.reexecuted
        report.event_mismatches += _events_disagree(run, status)


def _events_disagree(run: Run, status: Any) -> list[str]:
    """Where the run's event stream disagrees with its states: every attempt's start and
    every node's final state must be in it."""
    running: dict[str, int] = {}
    last: dict[str, str] = {}
    for event in run.events(follow=False):
        node = event["node"]
        last[node] = event["state"]
        if event["state"] == "running" and node:
            running[node] = running.get(node, 0) + 1
    out = []
    for name, node in status.nodes.items():
        if running.get(name, 0) != node.attempts:
            out.append(f"{run.id} {name}: {running.get(name, 0)} starts, {node.attempts} attempts")
        if node.state != last.get(name, "pending"):
            out.append(f"{run.id} {name}: last event {last.get(name)}, state {node.state}")
    if status.state != last.get(""):
        out.append(f"{run.id}: last run event {last.get('')}, state {status.state}")
    return out


def _bodies(dag: Any, run: Run) -> int:
    """Bodies a run executes when nothing goes wrong (every node once, every item once)."""
    items = run.status().nodes["square"].items or {"total": 0}
    return len(dag.specs) - 1 + items["total"]


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--url", required=True)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=300)
    parser.add_argument("--lease", type=int, default=5)
    parser.add_argument("--every", type=float, nargs=2, default=(0.3, 6.0))
    args = parser.parse_args(argv)
    report = storm(
        args.url,
        runs=args.runs,
        seconds=args.seconds,
        every=tuple(args.every),
        lease_s=args.lease,
        settle_s=600,
    )
    print(json.dumps(asdict(report), indent=2))
    return 0 if not report.stuck and not report.wrong else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
