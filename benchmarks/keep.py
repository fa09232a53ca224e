"""Where a benchmark keeps its rows: ``benchmarks/results/<name>.jsonl``, tracked in git as the
numbers the docs quote. Only a run asked to keep them (``--save``) appends, so a smoke run or a
look at one cell leaves the working tree as it was."""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
SAVE_HELP = "append the rows to benchmarks/results/ (the numbers the docs quote)"


def save_flag(parser: argparse.ArgumentParser) -> None:
    """Add ``--save`` to a benchmark's options."""
    parser.add_argument("--save", action="store_true", help=SAVE_HELP)


def take_save(argv: list[str]) -> tuple[list[str], bool]:
    """``argv`` without ``--save``, and whether it was there (for hand-parsed options)."""
    return [a for a in argv if a != "--save"], "--save" in argv


def keep(name: str, rows: Iterable[dict[str, Any]], save: bool) -> None:
    """Append ``rows`` to ``results/<name>.jsonl`` when ``save``; say where either way."""
    rows = list(rows)
    if not save:
        print(f"(not kept: --save appends these rows to benchmarks/results/{name}.jsonl)")
        return
    RESULTS.mkdir(exist_ok=True)
    with open(RESULTS / f"{name}.jsonl", "a") as fh:
        for row in rows:
            fh.write(json.dumps(row) + "\n")
    print(f"kept {len(rows)} rows in benchmarks/results/{name}.jsonl")
