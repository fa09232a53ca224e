"""A run's own Redis keys, and a DAG version's plan: spelled here only, and imported only by the
run store's modules (:mod:`~dagrq.store.runs`, :mod:`~dagrq.store.lifecycle`,
:mod:`~dagrq.store.repairs`, :mod:`~dagrq.store.scripts`, :mod:`~dagrq.store.index`,
:mod:`~dagrq.store.nodelogs`, :mod:`~dagrq.store.flow`, :mod:`~dagrq.store.waits`,
:mod:`~dagrq.store.objects`); an
import-linter contract in ``pyproject.toml`` keeps it so.
Everything else reads and writes a run through those.

All of a run's keys share the hash tag ``{run_id}`` so that they live in one cluster slot.

Examples:
    >>> run_key("abc")
    'dagrq:run:{abc}'
    >>> join_key("abc", "report")
    'dagrq:run:{abc}:join:report'
"""

from __future__ import annotations

PREFIX = "dagrq"


def run_key(run_id: str) -> str:
    """Hash: the run's meta (dag, state, pending count, params, timings)."""
    return f"{PREFIX}:run:{{{run_id}}}"


def nodes_key(run_id: str) -> str:
    """Hash: per-node fields ``<node>:state``, ``<node>:attempts``, ``<node>:error`` ..."""
    return f"{run_key(run_id)}:nodes"


def output_key(run_id: str, node: str) -> str:
    """String: one node's serialized output, written once, read by every child."""
    return f"{run_key(run_id)}:out:{node}"


def join_key(run_id: str, node: str) -> str:
    """Hash: the received-set context of one join node in one run."""
    return f"{run_key(run_id)}:join:{node}"


def inputs_key(run_id: str, node: str) -> str:
    """Hash: the received-set a join fired with (its context, renamed at the fire): which
    parents the node reads. Deleted when the node ends."""
    return f"{run_key(run_id)}:inputs:{node}"


def logs_key(run_id: str, node: str) -> str:
    """Stream: what one node's attempts printed and logged (bounded; the run's TTL)."""
    return f"{run_key(run_id)}:logs:{node}"


def events_key(run_id: str) -> str:
    """Stream: the run's state changes, one entry each (bounded; the run's TTL)."""
    return f"{run_key(run_id)}:events"


def items_key(run_id: str, node: str) -> str:
    """Hash: the items a mapped node runs over, ``index -> serialized item`` (when its source
    is an ordinary node; a map over a mapped node reads that node's results)."""
    return f"{run_key(run_id)}:items:{node}"


def map_results_key(run_id: str, node: str) -> str:
    """Hash: a mapped node's results, ``index -> serialized result``, one structure per run."""
    return f"{run_key(run_id)}:map:{node}"


def map_errors_key(run_id: str, node: str) -> str:
    """Hash: a mapped node's failed items, ``index -> one-line error``."""
    return f"{run_key(run_id)}:maperr:{node}"


def signals_key(run_id: str, node: str) -> str:
    """List: the signals sent to a wait node and not yet checked, JSON ``{id, value}`` each."""
    return f"{run_key(run_id)}:signals:{node}"


def replies_key(run_id: str) -> str:
    """Hash: each signal's answer, ``signal id -> pending | accepted | refused: why``."""
    return f"{run_key(run_id)}:replies"


def children_key(run_id: str) -> str:
    """Hash: a run's child runs (sub-DAG nodes), ``<node>#<item> -> child run id``."""
    return f"{run_key(run_id)}:children"


def plan_key(dag: str, plan_hash: str) -> str:
    """String: a DAG version's validated plan (JSON), shared by all its runs.

    Examples:
        >>> plan_key("orders", "ab12")
        'dagrq:plan:orders:ab12'
    """
    return f"{PREFIX}:plan:{dag}:{plan_hash}"
