"""Runs that end every way, for the table of exit codes (tests/test_exit_codes.py): `ok`
succeeds with a sink that skips itself (the run succeeded), `bad` fails, `slow` runs on."""

from __future__ import annotations

import time

from dagrq import DAG, Skip

ok = DAG("t_codes_ok")


@ok.node
def start() -> int:
    print("started")
    return 1


@ok.node
def quiet(start: int) -> int:
    return start


@ok.node
def maybe(start: int) -> int:
    raise Skip("nothing to do today")


bad = DAG("t_codes_bad")


@bad.node
def boom() -> int:
    raise ValueError("bad input")


slow = DAG("t_codes_slow")


@slow.node
def nap(seconds: float = 30.0) -> int:
    time.sleep(seconds)
    return 1
