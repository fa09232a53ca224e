"""Writing pictures: DOT/Mermaid text to a file, or rendered by Graphviz's ``dot``."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ..errors import DagrqError

RENDERED = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
#: text suffixes and the format each holds
TEXT = {".dot": "dot", ".gv": "dot", ".mmd": "mermaid", ".mermaid": "mermaid"}


def format_for(path: Path, fmt: str | None) -> str:
    """The text format to draw for ``-o path`` (``--format`` wins where it can).

    Raises:
        DagrqError: an unknown suffix, or a folder that does not exist.
    """
    suffix = path.suffix.lower()
    if suffix not in RENDERED and suffix not in TEXT:
        known = ", ".join(sorted({*RENDERED, *TEXT}))
        raise DagrqError(f"-o {path}: unknown picture suffix {suffix or '(none)'!r}; use {known}")
    if not path.parent.is_dir():
        raise DagrqError(f"-o {path}: folder {path.parent} does not exist; create it first")
    return fmt or TEXT.get(suffix, "dot")


def write_picture(text: str, path: Path, fmt: str) -> None:
    """Write ``text`` to ``path``; ``.svg``/``.png``/``.pdf`` are rendered from DOT.

    Raises:
        DagrqError: Graphviz is not installed, a Mermaid text was asked for as an image, or
            ``dot`` failed.
    """
    kind = RENDERED.get(path.suffix.lower())
    if kind is None:
        try:
            path.write_text(text)
        except OSError as exc:
            raise DagrqError(f"-o {path}: cannot write: {exc.strerror or exc}") from None
        return
    if fmt != "dot":
        raise DagrqError(
            f"-o {path}: Mermaid is written as text; use a .mmd file, or --format dot for {kind}"
        )
    binary = shutil.which("dot")
    if binary is None:
        raise DagrqError(
            f"-o {path}: rendering {kind} needs Graphviz's `dot` on PATH; install Graphviz "
            "(apt-get install graphviz, brew install graphviz) or write a .dot file"
        )
    done = subprocess.run(
        [binary, f"-T{kind}", "-o", str(path)], input=text.encode(), capture_output=True
    )
    if done.returncode != 0:
        message = " ".join(done.stderr.decode(errors="replace").split())
        raise DagrqError(f"-o {path}: Graphviz failed: {message}")
