"""What a run looks like at one moment: pure pydantic models, shared by the client and views."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

#: node states; the last four are final
NODE_STATES = ("pending", "queued", "running", "succeeded", "failed", "skipped", "canceled")
FINAL_NODE_STATES = frozenset({"succeeded", "failed", "skipped", "canceled"})
#: fill colour per node state (Okabe-Ito: distinguishable with every common colour blindness),
#: shared by DOT, Mermaid and the terminal views
STATE_COLORS: dict[str, str] = {
    "pending": "#FFFFFF",
    "queued": "#56B4E9",
    "running": "#0072B2",
    "succeeded": "#009E73",
    "failed": "#D55E00",
    "skipped": "#E69F00",
    "canceled": "#CC79A7",
}


class NodeStatus(BaseModel):
    """One node of one run, as ``Run.status()`` reports it."""

    state: str
    queue: str | None = None
    attempts: int = 0
    queued_at: float | None = None
    started_at: float | None = None
    ended_at: float | None = None
    error: str | None = None
    traceback: str | None = None
    rule: str | None = None
    parents: list[str] = []
    waits_for: list[str] = []
    items: dict[str, int] | None = None

    @property
    def duration_s(self) -> float | None:
        """Seconds from the last attempt's start to the end, when both are known."""
        if self.started_at is None or self.ended_at is None:
            return None
        return max(0.0, self.ended_at - self.started_at)


class RunStatus(BaseModel):
    """A run's state and every node's state at one moment."""

    id: str
    dag: str
    state: str
    created_at: float
    ended_at: float | None = None
    params: dict[str, Any] = {}
    nodes: dict[str, NodeStatus] = {}

    @property
    def done(self) -> bool:
        """True when the run has ended (any state but ``running``)."""
        return self.state != "running"

    def counts(self) -> dict[str, int]:
        """How many nodes are in each state."""
        out = dict.fromkeys(NODE_STATES, 0)
        for node in self.nodes.values():
            out[node.state] = out.get(node.state, 0) + 1
        return out

    def failed(self) -> dict[str, str]:
        """``{node: one-line error}`` of the failed nodes."""
        return {n: s.error or "failed" for n, s in self.nodes.items() if s.state == "failed"}
