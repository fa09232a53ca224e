"""Resolve a pipeline address, ``module:attr`` or ``path/to/file.py:attr``, to a :class:`DAG`.

A file is imported under its stem as module name, with its folder first on ``sys.path``, so
the CLI, ``dagrq worker`` and the node functions all agree on where the code lives. Without
``:attr`` the module's only DAG is taken.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path
from types import ModuleType

from .errors import PipelineError
from .model.dag import DAG


def load(address: str) -> DAG:
    """Import ``address`` and return its DAG (not yet validated).

    Raises:
        PipelineError: the file or module is missing, importing it raised, or the attribute
            is not a DAG.
    """
    target, _, attr = address.rpartition(":")
    if not target or not attr.isidentifier():
        target, attr = address, ""
    module = _import(target, address)
    if attr:
        if not hasattr(module, attr):
            raise PipelineError(
                f"pipeline {address!r}: {module.__name__} has no attribute {attr!r}; "
                f"DAGs there: {', '.join(_dags(module)) or 'none'}"
            )
        dag = getattr(module, attr)
        if not isinstance(dag, DAG):
            raise PipelineError(
                f"pipeline {address!r}: {attr!r} is {_a(type(dag).__name__)}, not a dagrq.DAG"
            )
        return dag
    found = _dags(module)
    if len(found) != 1:
        raise PipelineError(
            f"pipeline {address!r}: {len(found)} DAGs found ({', '.join(found) or 'none'}); "
            "name one as module:attr"
        )
    dag = getattr(module, found[0])
    assert isinstance(dag, DAG)
    return dag


def _a(noun: str) -> str:
    """``noun`` with its article: "an int", "a list"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _dags(module: ModuleType) -> list[str]:
    return sorted(k for k, v in vars(module).items() if isinstance(v, DAG))


def _import(target: str, address: str) -> ModuleType:
    is_file = target.endswith(".py") or os.sep in target or "/" in target
    try:
        if is_file:
            path = Path(target).resolve()
            if not path.is_file():
                raise PipelineError(f"pipeline {address!r}: no file {str(path)!r}; check the path")
            name = path.stem
            if not name.isidentifier():
                raise PipelineError(
                    f"pipeline {address!r}: file name {path.name!r} is not a module name; "
                    "rename it with letters, digits and _"
                )
            existing = sys.modules.get(name)
            if existing is not None and getattr(existing, "__file__", None) == str(path):
                return existing
            folder = str(path.parent)
            if folder not in sys.path:
                sys.path.insert(0, folder)
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(name, None)
                raise
            return module
        if os.getcwd() not in sys.path:
            sys.path.insert(0, os.getcwd())
        return importlib.import_module(target)
    except PipelineError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and target.startswith(exc.name):
            raise PipelineError(
                f"pipeline {address!r}: no module {exc.name!r}; use module:attr for an "
                "importable module or path/to/file.py:attr for a file"
            ) from None
        raise PipelineError(f"pipeline {address!r}: importing it failed: {_where(exc)}") from None
    except Exception as exc:
        raise PipelineError(f"pipeline {address!r}: importing it failed: {_where(exc)}") from None


def _where(exc: BaseException) -> str:
    """The error in one line, placed in the user's code: a syntax error at its own file and
    line, anything else at the innermost frame outside dagrq and the import machinery (where
    the pipeline's code called what raised).

    Examples:
        >>> try:
        ...     compile("def f(:\\n", "pipeline.py", "exec")
        ... except SyntaxError as exc:
        ...     _where(exc)
        'SyntaxError: invalid syntax at pipeline.py:1'
    """
    if isinstance(exc, SyntaxError) and exc.filename:
        text = " ".join(str(exc.msg).split())
        return f"SyntaxError: {text} at {exc.filename}:{exc.lineno}"
    frames = traceback.extract_tb(exc.__traceback__)
    ours = str(Path(__file__).resolve().parent)
    users = [
        f
        for f in frames
        if not f.filename.startswith((ours, "<frozen")) and "importlib" not in f.filename
    ]
    frame = users[-1] if users else frames[-1] if frames else None
    place = f" at {frame.filename}:{frame.lineno}" if frame is not None else ""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}{place}"
