"""The dagrq exception tree. Imports nothing from dagrq.

::

    DagrqError                      root: catch this to catch everything dagrq raises
    ├── DAGError                    the graph or a node definition is wrong (validation)
    │   ├── CycleError              a cycle; ``.cycle`` lists it, message ``a -> b -> a``
    │   ├── UnknownNodeError        ``after=`` names no node
    │   ├── DuplicateNodeError      two nodes share a name
    │   ├── NodeImportError         a worker could not import the node function
    │   └── NodeDefinitionError     a bad option or signature on one node
    ├── ParameterError              a run parameter is missing or ill-typed
    ├── PipelineError               ``module:attr`` / ``file.py:attr`` does not load a DAG
    ├── RunError                    something about one run
    │   ├── RunNotFound             no such run id in this Redis
    │   ├── RunFailed               the run ended ``failed``; ``.failed`` names the nodes
    │   ├── RunTimeout              ``Run.wait`` gave up; also a ``TimeoutError``
    │   ├── NoResult                the node has no stored output
    │   ├── OutputMissing           an offloaded output's object is gone from the object store
    │   ├── SignalRefused           a signal a waiting node refused (bad value, node ended)
    │   └── RedisUnreachable        Redis did not answer within the time a command waits
    ├── ConnectionConfigError       a Redis URL that cannot be used
    ├── OutputTooLarge              a node's output is over its ``max_output_bytes``
    ├── OutputTypeError             a node returned a value its return annotation does not allow
    ├── CommandFailed               a command node's program failed, timed out or gave bad output
    ├── WaitTimedOut                a wait or a sensor reached its timeout (the node fails)
    ├── ChildRunFailed              a sub-DAG's child run failed or was canceled (the node fails)
    ├── DAGChanged                  a run cannot go on as another version of its DAG
    ├── BranchError                 a branch chose a node that is not its child
    └── NodeRefused                 a job a dagrq worker must not run (another callable, an
                                    unloaded DAG, an unknown node)

Every error's message is one line that names the thing, the place and the fix; the CLI
prints it as it is and exits with :attr:`DagrqError.exit_code`.

Two exceptions are signals, not errors: :class:`Skip`, which a node raises to end
``skipped``, and :class:`NodeStopped`, which dagrq raises inside a node to stop it.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence


class DagrqError(Exception):
    """Root of every error dagrq raises on purpose."""

    #: the exit code the CLI uses for this error
    exit_code: int = 2


class DAGError(DagrqError):
    """The DAG or one of its nodes is invalid; raised before anything reaches Redis."""


class CycleError(DAGError):
    """The graph has a cycle.

    Examples:
        >>> str(CycleError(["a", "b", "a"]))
        'cycle: a -> b -> a; a DAG must not loop back, remove one of these edges'
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle = list(cycle)
        super().__init__(
            f"cycle: {' -> '.join(self.cycle)}; a DAG must not loop back, remove one of these edges"
        )


class UnknownNodeError(DAGError):
    """A reference (``after=``, ``@dag.map``, or a parameter close to a node's name) names a
    node the DAG does not have."""

    def __init__(
        self, node: str, ref: str, known: Sequence[str], *, fix: str | None = None
    ) -> None:
        self.node, self.ref = node, ref
        choices = ", ".join(sorted(known)) or "none"
        if fix is None:
            close = difflib.get_close_matches(ref, list(known), n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            fix = f"{hint}fix the name or define that node"
        super().__init__(
            f"node {node!r}: {ref!r} names no node of this DAG (nodes: {choices}); {fix}"
        )


class DuplicateNodeError(DAGError):
    """Two nodes of one DAG share a name."""

    def __init__(self, name: str, dag: str) -> None:
        self.name = name
        super().__init__(
            f"node {name!r} is defined twice in DAG {dag!r}; give one of them name=..."
        )


class NodeImportError(DAGError):
    """A worker could not import the node function by its dotted path."""


class NodeDefinitionError(DAGError):
    """A node's options or signature cannot work."""


class ParameterError(DagrqError):
    """A run parameter is missing, unknown or has the wrong type."""


class PipelineError(DagrqError):
    """A pipeline address does not resolve to a DAG."""


class ConnectionConfigError(DagrqError):
    """A Redis URL or connection setting cannot be used."""


class RunError(DagrqError):
    """An error about one run."""

    exit_code = 1


class RunNotFound(RunError):
    """No run with that id exists in this Redis (never submitted, or expired)."""

    exit_code = 2


class RunFailed(RunError):
    """The run ended ``failed``.

    Attributes:
        run_id: the run token.
        failed: ``{node: one-line error}`` for every failed node.
    """

    def __init__(self, run_id: str, failed: dict[str, str]) -> None:
        self.run_id, self.failed = run_id, dict(failed)
        first = next(iter(self.failed.items()), ("?", "?"))
        super().__init__(
            f"run {run_id} failed: {', '.join(sorted(self.failed))} failed; "
            f"first error: {first[0]}: {first[1]}"
        )


class RunTimeout(RunError, TimeoutError):
    """``Run.wait(timeout)`` returned before the run ended; the run goes on."""


class NoResult(RunError):
    """The node has no stored output (not finished, failed, skipped or expired), or the run
    has no such node. The CLI exits 1 for a missing output; a node name the run does not have
    is a usage error there (2), checked before this is raised."""


class OutputMissing(RunError):
    """An output kept in the DAG's object store (``DAG(output_store=)``) cannot be read: the
    message names the run, the node and the object's URL. A node that reads it fails with
    this; ``dagrq result`` exits 1."""


class RedisUnreachable(RunError):
    """Redis did not answer for as long as a command waits for it (``dagrq run
    --redis-wait``); the run goes on where it was once Redis is back."""


class OutputTooLarge(DagrqError):
    """A node returned more than its ``max_output_bytes`` (the node fails with this)."""

    def __init__(self, node: str, size: int, limit: int) -> None:
        self.node, self.size, self.limit = node, size, limit
        super().__init__(
            f"output of node {node!r} is {size:,} bytes, over its limit of {limit:,}; raise it "
            f"with @dag.node(max_output_bytes=...) or DAG(..., max_output_bytes=...), or store "
            "the data elsewhere (a file, an object store) and return a reference to it"
        )


class OutputTypeError(DagrqError):
    """A node returned a value its return annotation does not allow (the node fails with
    this, before anything is stored)."""

    def __init__(self, node: str, expected: str, actual: str, detail: str) -> None:
        self.node, self.expected, self.actual = node, expected, actual
        super().__init__(
            f"node {node!r} returned {actual}, not {expected} (its return annotation): "
            f"{detail}; return a {expected}, or change the annotation"
        )


class CommandFailed(DagrqError):
    """A command node's program exited non-zero, timed out, could not start or printed output
    that does not parse (the node fails with this)."""


class SignalRefused(RunError):
    """A signal the node refused: a value its type does not allow (the pydantic message
    follows), a node that already ended, a node that is no wait, or a run that ended. The
    node goes on waiting."""

    exit_code = 2


class WaitTimedOut(DagrqError):
    """A wait node (``dag.wait``) or a sensor (``@dag.sensor``) reached its ``timeout``
    without a value: the node fails with this (``on_timeout="fail"``)."""


class ChildRunFailed(DagrqError):
    """A sub-DAG node's child run failed or was canceled: the node fails with this, naming the
    child run (``dagrq why CHILD``)."""


class DAGChanged(DagrqError):
    """A run cannot go on as another version of its DAG (``Run.upgrade``): the graph changed,
    or the old version still has live workers."""

    exit_code = 2


class NodeRefused(DagrqError):
    """A job a dagrq worker must not run: another callable, a DAG it has not loaded, or a
    node the DAG does not have."""

    exit_code = 1


class BranchError(DagrqError):
    """A branch returned a name that is not one of its children (the branch node fails)."""


class Skip(Exception):
    """Raise ``dagrq.Skip("why")`` inside a node to end it ``skipped`` with that reason; its
    children hear ``skipped`` and decide by their rules, as after a branch not taken.

    Examples:
        >>> Skip("nothing new today").reason
        'nothing new today'
    """

    def __init__(self, reason: str = "") -> None:
        self.reason = reason
        super().__init__(reason)


class NodeStopped(BaseException):
    """Raised inside a node running in a worker's own process when its run is canceled (a
    ``BaseException``, so a node's own ``except Exception`` cannot swallow it)."""
