"""Command nodes: local programs (sh, awk) and a container step joined by Python nodes."""

from __future__ import annotations

import os

from dagrq import DAG

IMAGE = os.environ.get("DAGRQ_TEST_IMAGE", "localhost/tiny:1")

dag = DAG("cmds")


@dag.node
def split(text: str) -> list[str]:
    return text.split()


# stdin is {"split": [...]}: count its bytes
dag.command("count_box", ["/bin/sh", "-c", "cat | wc -c"], inputs=["split"], output=int)
# the input file, written back through $DAGRQ_OUT (wins over stdout)
dag.command(
    "echo_file",
    ["/bin/sh", "-c", 'cat "$DAGRQ_IN/split.json" > "$DAGRQ_OUT"; echo "from $DAGRQ_NODE" >&2'],
    inputs=["split"],
    output=list[str],
    env={"MODE": "fast"},
)
# one awk per item: the item arrives as {"split": "bb"}
dag.command(
    "lens", ["awk", '{ n = split($0, a, "\\""); print length(a[4]) }'], map_over="split", output=int
)


@dag.node
def total(count_box: int, echo_file: list[str], lens: list[int]) -> dict[str, object]:
    return {"count": count_box, "words": echo_file, "lens": lens}


failing = DAG("cmd_fail")
failing.command("boom", ["/bin/sh", "-c", "echo one >&2; echo two >&2; exit 3"])
badout = DAG("cmd_badout")
badout.command("words", ["/bin/sh", "-c", "echo not-a-number"], output=int)
slow = DAG("cmd_slow")
slow.command("sleepy", ["/bin/sh", "-c", "sleep 300 & sleep 300; echo done"], timeout=2)
flaky = DAG("cmd_retry")
# fails its first attempt: the flag file is per run
flaky.command(
    "once",
    [
        "/bin/sh",
        "-c",
        'f="${TMPDIR:-/tmp}/dagrq-flag-$DAGRQ_RUN_ID"; '
        'if [ -e "$f" ]; then rm "$f"; echo 7; else touch "$f"; exit 1; fi',
    ],
    output=int,
    retry=1,
)
canceled = DAG("cmd_cancel")
canceled.command("long", ["/bin/sh", "-c", "sleep 300 & sleep 300"])

many = DAG("cmd_many")


@many.node
def numbers(n: int) -> list[int]:
    return list(range(n))


many.command(
    "double",
    ["awk", '{ gsub(/[^0-9]/, ""); print $0 * 2 }'],
    map_over="numbers",
    output=int,
    chunk=10,
)


@many.node
def add(double: list[int]) -> int:
    return sum(double)


boxed = DAG("cmd_box")


@boxed.node
def words(text: str) -> list[str]:
    return text.split()


boxed.command(
    "box_count", ["/bin/sh", "-c", "cat | wc -c"], inputs=["words"], image=IMAGE, output=int
)
boxed.command(
    "box_file",
    ["/bin/sh", "-c", 'cat /dagrq/in/words.json > /dagrq/out.json; echo "$DAGRQ_NODE" >&2'],
    inputs=["words"],
    image=IMAGE,
    output=list[str],
)
boxed.command("box_slow", ["/bin/sh", "-c", "sleep 300"], image=IMAGE, timeout=3)


@boxed.node(trigger="all_done")
def joined(box_count: int, box_file: list[str], box_slow: str | None) -> dict[str, object]:
    return {"count": box_count, "words": box_file, "slow": box_slow}
