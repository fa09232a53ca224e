"""Which node (and which of a mapped node's items) one RQ job of dagrq runs: :class:`JobRef`.

Every dagrq job carries ``(dag, run, node[, chunk | item][, sig])`` as its RQ keyword
arguments; they are parsed into a ``JobRef`` once (:func:`dagrq.store.rqjobs.ref_of`), and
every caller asks it, not the raw dict.

Examples:
    >>> from dagrq.model.plan import NodeSpec
    >>> spec = NodeSpec(name="parse", chunk=100, map_over="files")
    >>> ref = JobRef.parse({"dag": "d", "run": "r1", "node": "parse", "chunk": 2})
    >>> ref.own, ref.single(spec), list(ref.indices(spec, total=250))[:3]
    (False, False, [200, 201, 202])
    >>> len(ref.indices(spec, total=250))
    50
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .plan import NodeSpec


@dataclass(frozen=True)
class JobRef:
    """One dagrq job's identity.

    Attributes:
        dag: the DAG's name.
        run: the run id.
        node: the node.
        chunk: for a chunk job of a mapped node, the chunk's number.
        item: for an item of a mapped node retried in a job of its own, the item's index.
        sig: the job's signature, when jobs are signed (``$DAGRQ_SECRET``).
    """

    dag: str
    run: str
    node: str
    chunk: int | None = None
    item: int | None = None
    sig: str | None = None

    @classmethod
    def parse(cls, kwargs: Mapping[str, Any]) -> JobRef:
        """The identity in a job's keyword arguments.

        Raises:
            ValueError: a field missing or of the wrong type (the job was not made by dagrq).
        """
        try:
            ref = cls(
                dag=kwargs["dag"],
                run=kwargs["run"],
                node=kwargs["node"],
                chunk=kwargs.get("chunk"),
                item=kwargs.get("item"),
                sig=kwargs.get("sig"),
            )
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not a dagrq job's arguments: missing {exc}") from None
        texts = (ref.dag, ref.run, ref.node)
        numbers = (ref.chunk, ref.item)
        if not all(isinstance(v, str) for v in texts) or not all(
            v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in numbers
        ):
            raise ValueError(f"not a dagrq job's arguments: {dict(kwargs)!r}")
        return ref

    @property
    def own(self) -> bool:
        """True for a node's own job (not a chunk or item job of a mapped node)."""
        return self.chunk is None and self.item is None

    def single(self, spec: NodeSpec) -> bool:
        """True when this item job holds one item: an item retried alone, or a chunk of a map
        with ``chunk=1`` (a failure is then retried by RQ, as a node's own job is)."""
        return self.item is not None or spec.chunk == 1

    def indices(self, spec: NodeSpec, total: int | None = None) -> Sequence[int]:
        """The items this item job holds (cut at ``total`` when given)."""
        if self.item is not None:
            return [self.item]
        return spec.chunk_items(self.chunk or 0, total)

    def signed(self) -> dict[str, Any]:
        """The fields a job's signature covers."""
        return {
            "dag": self.dag,
            "run": self.run,
            "node": self.node,
            "chunk": self.chunk,
            "item": self.item,
        }
