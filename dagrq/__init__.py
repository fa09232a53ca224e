"""dagrq: declarative DAG workflows on RQ and Redis, with atomic many-to-many joins.

Decorate plain functions as nodes; a parameter named after another node is an edge that
carries its output; each join node keeps a received-set context per run in Redis, updated in
one atomic step per arrival, and fires exactly once.
"""

from .client import Run
from .dag import DAG, Node
from .errors import (
    ConnectionConfigError,
    CycleError,
    DAGError,
    DagrqError,
    DuplicateNodeError,
    NodeDefinitionError,
    NodeImportError,
    NoResult,
    ParameterError,
    PipelineError,
    RunError,
    RunFailed,
    RunNotFound,
    RunTimeout,
    UnknownNodeError,
)
from .options import NodeOptions, Quorum, Retry, quorum
from .status import NodeStatus, RunStatus

__version__ = "0.1.0"

__all__ = [
    "DAG",
    "ConnectionConfigError",
    "CycleError",
    "DAGError",
    "DagrqError",
    "DuplicateNodeError",
    "NoResult",
    "Node",
    "NodeDefinitionError",
    "NodeImportError",
    "NodeOptions",
    "NodeStatus",
    "ParameterError",
    "PipelineError",
    "Quorum",
    "Retry",
    "Run",
    "RunError",
    "RunFailed",
    "RunNotFound",
    "RunStatus",
    "RunTimeout",
    "UnknownNodeError",
    "__version__",
    "quorum",
]
