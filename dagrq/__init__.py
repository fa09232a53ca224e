"""dagrq: declarative DAG workflows on RQ and Redis, with atomic many-to-many joins.

Decorate plain functions as nodes; a parameter named after another node is an edge that
carries its output; each join node keeps a received-set context per run in Redis, updated in
one atomic step per arrival, and fires exactly once.

Declaring and validating a DAG needs neither redis nor rq: ``Run`` (the client) is imported
on first use.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    BranchError,
    ChildRunFailed,
    ConnectionConfigError,
    CycleError,
    DAGChanged,
    DAGError,
    DagrqError,
    DuplicateNodeError,
    NodeDefinitionError,
    NodeImportError,
    NodeRefused,
    NoResult,
    OutputMissing,
    OutputTooLarge,
    OutputTypeError,
    ParameterError,
    PipelineError,
    RedisUnreachable,
    RunError,
    RunFailed,
    RunNotFound,
    RunTimeout,
    SignalRefused,
    Skip,
    UnknownNodeError,
    WaitTimedOut,
)
from .model.dag import DAG
from .model.events import Event, on_event
from .model.hooks import HookEvent
from .model.node import Node
from .model.options import NodeOptions, Quorum, Retry, quorum
from .model.status import Explanation, NodeStatus, RunStatus, RunSummary

if TYPE_CHECKING:
    from .client import Run

__version__ = "0.1.0"

__all__ = [
    "DAG",
    "BranchError",
    "ChildRunFailed",
    "ConnectionConfigError",
    "CycleError",
    "DAGChanged",
    "DAGError",
    "DagrqError",
    "DuplicateNodeError",
    "Event",
    "Explanation",
    "HookEvent",
    "NoResult",
    "Node",
    "NodeDefinitionError",
    "NodeImportError",
    "NodeOptions",
    "NodeRefused",
    "NodeStatus",
    "OutputMissing",
    "OutputTooLarge",
    "OutputTypeError",
    "ParameterError",
    "PipelineError",
    "Quorum",
    "RedisUnreachable",
    "Retry",
    "Run",
    "RunError",
    "RunFailed",
    "RunNotFound",
    "RunStatus",
    "RunSummary",
    "RunTimeout",
    "SignalRefused",
    "Skip",
    "UnknownNodeError",
    "WaitTimedOut",
    "__version__",
    "emit",
    "on_event",
    "quorum",
]


def __getattr__(name: str) -> Any:
    """``dagrq.Run``, ``dagrq.emit`` and ``dagrq.pools``, imported on first use (they bring
    redis and rq)."""
    if name == "Run":
        from .client import Run

        return Run
    if name == "emit":
        from .client import emit

        return emit
    if name == "pools":
        import importlib

        return importlib.import_module(".pools", __name__)
    raise AttributeError(f"module 'dagrq' has no attribute {name!r}")
