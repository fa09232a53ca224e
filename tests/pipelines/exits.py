"""Nodes that leave in every way but returning: sys.exit, KeyboardInterrupt and GeneratorExit
raised by the body, and os._exit. Each must fail (never hang) and its run must end."""

from __future__ import annotations

import os
import sys

from dagrq import DAG

dag = DAG("t_exits")


@dag.node
def calls_sys_exit() -> int:
    sys.exit(3)


@dag.node
def raises_keyboard_interrupt() -> int:
    raise KeyboardInterrupt


@dag.node
def raises_generator_exit() -> int:
    raise GeneratorExit


@dag.node
def after(calls_sys_exit: int) -> int:
    return calls_sys_exit


vanish = DAG("t_vanish")


@vanish.node
def calls_os_exit() -> int:
    os._exit(7)


@vanish.node
def after_vanish(calls_os_exit: int) -> int:
    return calls_os_exit
