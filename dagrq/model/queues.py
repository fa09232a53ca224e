"""RQ queue names: a DAG's queue, a join's aggregator queue, and a DAG version's copy of each.

Pure naming (the graph model and the plan decide queues; the Redis keys of a queue are
:mod:`dagrq.store.keys`'s).

Examples:
    >>> default_queue_name("orders"), join_queue_name("orders", "report")
    ('dagrq.orders', 'dagrq.orders.report')
"""

from __future__ import annotations

PREFIX = "dagrq"


def default_queue_name(dag: str) -> str:
    """The RQ queue of a DAG's ordinary (non-join) nodes."""
    return f"{PREFIX}.{dag}"


def join_queue_name(dag: str, node: str) -> str:
    """The aggregator queue of one join node."""
    return f"{PREFIX}.{dag}.{node}"


def versioned_queue(queue_name: str, version: str) -> str:
    """The RQ queue where nodes of queue ``queue_name`` wait in runs pinned to DAG version
    ``version`` (a plan hash). A worker listens only on its own version's queues, so a rolling
    upgrade never hands a run to code of another version.

    Examples:
        >>> versioned_queue("dagrq.orders", "3f9a1c2b4d5e6f70")
        'dagrq.orders@3f9a1c2b4d5e6f70'
    """
    return f"{queue_name}@{version}"
