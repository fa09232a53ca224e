"""Polyglot: a Python source, an awk program and a shell script on the worker's host, a step
in a container image, and a Python join of them all.

    dagrq run examples/polyglot.py:dag                    # needs podman or docker and the image
    dagrq run examples/polyglot.py:dag -p text="to be or not to be"

The container step runs in ``$DAGRQ_EXAMPLE_IMAGE`` (default ``localhost/tiny:1``, a busybox
image: docs/commands.md shows how to build it without a registry).
"""

from __future__ import annotations

import os

from dagrq import DAG

IMAGE = os.environ.get("DAGRQ_EXAMPLE_IMAGE", "localhost/tiny:1")

dag = DAG("polyglot")


@dag.node
def words(text: str = "the quick brown fox jumps over the lazy dog the end") -> list[str]:
    """Python: split the text."""
    return text.split()


# awk, once per word (a map of commands): the item arrives on stdin as {"words": "fox"}
dag.command(
    "lengths",
    ["awk", '{ split($0, part, "\\""); print length(part[4]) }'],
    map_over="words",
    output=int,
    chunk=4,
)

# a shell script on the host: the most frequent word, read from the input file
dag.command(
    "top_word",
    [
        "/bin/sh",
        "-c",
        'tr -d \'[]" \' < "$DAGRQ_IN/words.json" | tr , "\\n" | sort | uniq -c | sort -rn '
        "| head -1 | awk '{ print $2 }'",
    ],
    inputs=["words"],
)

# a container step: no network, inputs mounted read-only, output through /dagrq/out.json
dag.command(
    "byte_count",
    ["/bin/sh", "-c", "wc -c < /dagrq/in/words.json > /dagrq/out.json"],
    inputs=["words"],
    image=IMAGE,
    output=int,
    timeout=60,
)


@dag.node
def report(words: list[str], lengths: list[int], top_word: str, byte_count: int) -> str:
    """Python: join the four."""
    longest = max(zip(lengths, words, strict=True))[1]
    return (
        f"{len(words)} words, longest {longest!r}, most frequent {top_word!r}, "
        f"{byte_count} bytes of JSON"
    )
