"""The public surface: pinned exports, and the doctests of the pure helpers."""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from pathlib import Path

import pytest

import dagrq

EXPORTS = {
    "DAG",
    "Node",
    "NodeOptions",
    "Retry",
    "Quorum",
    "quorum",
    "Run",
    "RunStatus",
    "RunSummary",
    "NodeStatus",
    "DagrqError",
    "DAGError",
    "CycleError",
    "UnknownNodeError",
    "DuplicateNodeError",
    "NodeImportError",
    "NodeRefused",
    "OutputTooLarge",
    "OutputTypeError",
    "BranchError",
    "Skip",
    "DAGChanged",
    "Explanation",
    "NodeDefinitionError",
    "ParameterError",
    "PipelineError",
    "ConnectionConfigError",
    "RunError",
    "RunNotFound",
    "RunFailed",
    "RunTimeout",
    "NoResult",
    "OutputMissing",
    "RedisUnreachable",
    "SignalRefused",
    "WaitTimedOut",
    "ChildRunFailed",
    "Event",
    "HookEvent",
    "on_event",
    "emit",
    "__version__",
}


def test_exports_are_pinned() -> None:
    assert set(dagrq.__all__) == EXPORTS
    for name in EXPORTS:
        assert hasattr(dagrq, name), name


def test_every_error_is_a_dagrq_error_and_validation_errors_are_dag_errors() -> None:
    for name in EXPORTS - {"Skip"}:  # Skip is a signal a node raises, not an error
        obj = getattr(dagrq, name)
        if isinstance(obj, type) and issubclass(obj, Exception):
            assert issubclass(obj, dagrq.DagrqError), name
    for cls in (
        dagrq.CycleError,
        dagrq.UnknownNodeError,
        dagrq.DuplicateNodeError,
        dagrq.NodeImportError,
        dagrq.NodeDefinitionError,
    ):
        assert issubclass(cls, dagrq.DAGError)
    assert issubclass(dagrq.RunTimeout, TimeoutError)


MODULES = sorted(
    m.name for m in pkgutil.walk_packages(dagrq.__path__, "dagrq.") if m.name != "dagrq.__main__"
)
#: modules whose helpers are documented by example (each must keep at least one)
WITH_EXAMPLES = {
    "dagrq.store.keys",
    "dagrq.store.runkeys",
    "dagrq.model.rules",
    "dagrq.model.options",
    "dagrq.model.codec",
    "dagrq.errors",
    "dagrq.model.params",
    "dagrq.model.plan",
    "dagrq.model.status",
    "dagrq.model.node",
    "dagrq.model.call",
    "dagrq.model.jobref",
    "dagrq.model.queues",
    "dagrq.model.preflight",
    "dagrq.model.objects",
    "dagrq.cluster",
    "dagrq.jobs.attempt",
    "dagrq.jobs.fanout",
    "dagrq.cli.progress",
}


@pytest.mark.parametrize("module", MODULES)
def test_doctests(module: str) -> None:
    mod = importlib.import_module(module)
    result = doctest.testmod(mod, optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0 or module not in WITH_EXAMPLES


def test_declaring_a_dag_imports_neither_redis_nor_rq() -> None:
    import subprocess
    import sys

    probe = (
        "import sys, dagrq; from dagrq import loader; "
        "d = loader.load('examples/etl.py:dag'); d.validate(); d.to_dot(); d.run_local(rows=5); "
        "print(sorted(m for m in ('redis', 'rq', 'rich') if m in sys.modules))"
    )
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
    assert dagrq.Run.__module__ == "dagrq.client"  # imported on first use
