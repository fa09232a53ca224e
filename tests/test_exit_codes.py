"""Every command's exit code, case by case, against the table in docs/cli.md (the one source:
a row there without a case here, or a code that differs, fails)."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from dagrq.model.objects import Ref
from dagrq.store import runkeys

from .helpers import ROOT, dagrq, pipeline

OK, BAD, SLOW = (pipeline("codes", name) for name in ("ok", "bad", "slow"))


def documented() -> dict[tuple[str, str], int]:
    """``(command, case) -> exit`` from docs/cli.md's table of exit codes by command."""
    text = (ROOT / "docs" / "cli.md").read_text()
    rows = re.findall(r"^\| `([^`]+)` \| (.+?) \| (\d+) \|$", text, flags=re.M)
    return {(command, case): int(code) for command, case, code in rows}


class Runs:
    """The runs the cases read: one succeeded (its sink skipped itself), one failed, one
    that runs on (no worker takes it), and one succeeded that a case resumes."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        self.ok_run = self._run(OK)
        self.bad_run = self._run(BAD)
        self.slow_id = self.cli("submit", SLOW).stdout.strip()
        self.ok_id = _run_id(self.ok_run)
        self.bad_id = _run_id(self.bad_run)
        self.again_id = _run_id(self._run(OK))  # retried by a case: its state changes

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return dagrq(*args, "--url", self.url, cwd=self.folder)

    def _run(self, address: str, *extra: str) -> subprocess.CompletedProcess[str]:
        return self.cli("run", address, "-w", "1", *extra)

    def planless(self) -> str:
        """A run whose plan is not in Redis (its hash names a version never stored)."""
        run_id = _run_id(self._run(OK))
        redis.Redis.from_url(self.url).hset(runkeys.run_key(run_id), "plan", "0" * 16)
        return run_id

    def gone_object(self) -> str:
        """A run whose output of ``quiet`` refers to an object that is not there."""
        run_id = _run_id(self._run(OK))
        ref = Ref(f"file://{self.folder}/objects/{run_id}/quiet/x", run_id, "quiet", 4)
        redis.Redis.from_url(self.url).set(runkeys.output_key(run_id, "quiet"), ref.to_bytes())
        return run_id


def _run_id(done: subprocess.CompletedProcess[str]) -> str:
    found = re.search(r"run ([0-9a-f]{32}) of DAG", done.stdout)
    assert found, done.stdout + done.stderr
    return found.group(1)


@pytest.fixture(scope="module")
def runs(redis_url: str, tmp_path_factory: pytest.TempPathFactory) -> Runs:
    redis.Redis.from_url(redis_url).flushall()
    return Runs(redis_url, tmp_path_factory.mktemp("codes"))


CASES: dict[tuple[str, str], Callable[[Runs], subprocess.CompletedProcess[str]]] = {
    ("run", "the run succeeded (whatever its sinks' states: a skipped sink prints "
     "`no output (skipped: why)`)"): lambda r: r.ok_run,
    ("run", "the run failed"): lambda r: r.bad_run,
    ("run", "a bad parameter (nothing written)"): lambda r: r.cli("run", SLOW, "-p", "seconds=x"),
    ("run", "`--timeout` ran out"): lambda r: r._run(SLOW, "--timeout", "1"),
    ("result RUN NODE", "the node succeeded"): lambda r: r.cli("result", r.ok_id, "quiet"),
    ("result RUN NODE", "the node failed, was skipped or canceled (no output)"): lambda r: r.cli(
        "result", r.ok_id, "maybe"
    ),
    ("result RUN NODE", "the run has no such node"): lambda r: r.cli("result", r.ok_id, "nope"),
    ("result RUN", "a sink has an output"): lambda r: r.cli("result", r.ok_id),
    ("result RUN", "no sink has an output"): lambda r: r.cli("result", r.bad_id),
    ("status RUN", "the run succeeded"): lambda r: r.cli("status", r.ok_id),
    ("status RUN", "the run failed or was canceled"): lambda r: r.cli("status", r.bad_id),
    ("status RUN", "no such run"): lambda r: r.cli("status", "0" * 32),
    ("status RUN", "the run is still running"): lambda r: r.cli("status", r.slow_id),
    ("logs RUN NODE", "the node's lines (none is fine: it says so on stderr)"): lambda r: r.cli(
        "logs", r.ok_id, "quiet"
    ),
    ("logs RUN NODE", "the run has no such node, or the node no such attempt"): lambda r: r.cli(
        "logs", r.ok_id, "start", "--attempt", "9"
    ),
    ("why RUN NODE", "the node explained"): lambda r: r.cli("why", r.bad_id, "boom"),
    ("why RUN NODE", "the run has no such node"): lambda r: r.cli("why", r.bad_id, "nope"),
    ("why RUN NODE", "the run's plan is gone from Redis (damaged: `dagrq reconcile` ends it)"):
        lambda r: r.cli("why", r.planless(), "quiet"),
    ("cancel RUN", "canceled, or had already ended (it says so)"): lambda r: r.cli(
        "cancel", r.ok_id
    ),
    ("cancel RUN", "no such run"): lambda r: r.cli("cancel", "0" * 32),
    ("retry RUN", "resumed (or nothing to run again: it says so)"): lambda r: r.cli(
        "retry", r.again_id
    ),
    ("retry RUN", "the run is still running"): lambda r: r.cli("retry", r.slow_id),
    ("purge RUN", "deleted: its keys, jobs, index entries and stored objects"): lambda r: r.cli(
        "purge", _run_id(r._run(OK))
    ),
    ("purge RUN", "no such run, or the run is still running"): lambda r: r.cli(
        "purge", r.slow_id
    ),
    ("result RUN NODE", "the node's output is in the object store and its object is gone (the "
     "error names the run, the node and the URL)"): lambda r: r.cli(
        "result", r.gone_object(), "quiet"
    ),
}  # fmt: skip


def test_every_documented_row_has_a_case() -> None:
    assert set(documented()) == set(CASES)


@pytest.mark.parametrize("case", sorted(CASES), ids=lambda c: f"{c[0]}: {c[1][:40]}")
def test_exit_code(runs: Runs, case: tuple[str, str]) -> None:
    done = CASES[case](runs)
    assert done.returncode == documented()[case], (done.stdout[-2000:], done.stderr[-2000:])
    if documented()[case] == 2:  # a usage error is one line, no traceback
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr


def test_a_run_whose_sink_skipped_itself_says_why_and_succeeds(runs: Runs) -> None:
    assert runs.ok_run.returncode == 0
    assert "maybe: no output (skipped: nothing to do today)" in runs.ok_run.stdout
    assert "quiet: 1" in runs.ok_run.stdout
