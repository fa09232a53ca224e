"""The classic RQ fan-in pattern as a dagrq DAG.

A master makes a token; worker 1 and worker 2 each do half the work and report to one
aggregator; the aggregator acts once every input is in. In hand-written RQ this is a
``{"received": {"worker1": true, "worker2": false}}`` hash updated with GET/modify/SET, which
races unless one aggregator worker owns the token. Here the run id is the token, the
received-set lives in Redis under the run, and each arrival is one atomic step.

    dagrq run examples/aggregator.py:dag -p text="the quick brown fox jumps over the lazy dog"
"""

from __future__ import annotations

from dagrq import DAG

dag = DAG("aggregator")


@dag.node
def master(text: str = "to be or not to be that is the question") -> list[str]:
    """Split the input into words: the work the two workers share."""
    return text.split()


@dag.node
def worker1(master: list[str]) -> dict[str, int]:
    """Count the words in the first half."""
    return _count(master[: len(master) // 2])


@dag.node
def worker2(master: list[str]) -> dict[str, int]:
    """Count the words in the second half."""
    return _count(master[len(master) // 2 :])


@dag.node
def aggregator(worker1: dict[str, int], worker2: dict[str, int]) -> dict[str, int]:
    """The join: runs once, when both workers have reported, with both results."""
    total = dict(worker1)
    for word, n in worker2.items():
        total[word] = total.get(word, 0) + n
    return dict(sorted(total.items(), key=lambda kv: (-kv[1], kv[0])))


def _count(words: list[str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for w in words:
        out[w] = out.get(w, 0) + 1
    return out
