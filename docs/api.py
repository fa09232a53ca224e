"""Write docs/api.md, the API reference, from the docstrings of dagrq's public names, and
the state colour table of docs/pictures.md from the code's one table of them.

python docs/api.py            # regenerate docs/api.md and the colour table
python docs/api.py --check    # exit 1 when either is out of date (CI)
"""

from __future__ import annotations

import inspect
import sys
from pathlib import Path
from typing import Any

import dagrq
from dagrq import errors, pools
from dagrq.client import Run
from dagrq.model.params import type_name
from dagrq.model.status import STATE_COLORS
from dagrq.store.nodelogs import LogEntry

OUT = Path(__file__).with_name("api.md")
PICTURES = Path(__file__).with_name("pictures.md")
COLOURS = ("<!-- colours:start (python docs/api.py) -->", "<!-- colours:end -->")
#: Okabe-Ito's names for its colours
COLOUR_NAMES = {
    "#FFFFFF": "white",
    "#56B4E9": "sky blue",
    "#0072B2": "blue",
    "#009E73": "bluish green",
    "#D55E00": "vermillion",
    "#E69F00": "orange",
    "#F0E442": "yellow",
    "#CC79A7": "reddish purple",
    "#BBBBBB": "light grey",
    "#7FCDB5": "light bluish green",
}

#: (heading, objects) in page order
SECTIONS: list[tuple[str, list[Any]]] = [
    ("Declaring", [dagrq.DAG, dagrq.Node, dagrq.NodeOptions, dagrq.Retry, dagrq.quorum]),
    ("Running and reading runs", [Run]),
    (
        "What a run looks like",
        [dagrq.RunStatus, dagrq.NodeStatus, dagrq.RunSummary, dagrq.Explanation, LogEntry],
    ),
    ("Flow control (`dagrq.pools`)", [pools.set, pools.reset, pools.list]),
    ("Signals", [dagrq.Skip]),
    ("Alert hooks", [dagrq.HookEvent]),
]


def _doc(obj: Any) -> str:
    return inspect.cleandoc(inspect.getdoc(obj) or "(no docstring)")


def _signature(name: str, obj: Any) -> str:
    try:
        return f"{name}{inspect.signature(obj)}"
    except (TypeError, ValueError):
        return name


def _members(cls: type) -> list[tuple[str, Any]]:
    """Public methods and properties defined by ``cls`` itself (not pydantic's)."""
    out = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, (staticmethod, classmethod)):
            member = member.__func__
        if inspect.isfunction(member) or isinstance(member, property):
            out.append((name, member))
    return out


def _fields(cls: type) -> list[str]:
    fields = getattr(cls, "model_fields", None)
    if not fields:
        return []
    return [f"`{name}`: `{type_name(f.annotation)}`" for name, f in fields.items()]


def render() -> str:
    """The page."""
    lines = [
        "# API reference",
        "",
        "Generated from the docstrings by `python docs/api.py` (CI checks it is current). The",
        "names are importable from `dagrq` (`Run` too, imported on first use).",
        "",
    ]
    for heading, objects in SECTIONS:
        lines += [f"## {heading}", ""]
        for obj in objects:
            name = obj.__name__
            if getattr(obj, "__module__", "") == "dagrq.pools":
                name = f"pools.{name}"
            lines += [f"### `{_signature(name, obj)}`", "", _doc(obj), ""]
            fields = _fields(obj) if inspect.isclass(obj) else []
            if fields:
                lines += ["Fields: " + ", ".join(fields) + ".", ""]
            if inspect.isclass(obj):
                for member_name, member in _members(obj):
                    if isinstance(member, property):
                        lines += [f"#### `{name}.{member_name}` (property)", "", _doc(member), ""]
                    else:
                        shown = _signature(member_name, member)
                        for bound in ("(self, ", "(cls, "):
                            shown = shown.replace(bound, "(")
                        shown = shown.replace("(self)", "()")
                        lines += [f"#### `{name}.{shown}`", "", _doc(member), ""]
    lines += ["## Errors", "", "```text", inspect.cleandoc(errors.__doc__ or "").split("::")[1]]
    lines[-1] = lines[-1].split("Every error's")[0].strip("\n")
    lines += ["```", ""]
    for name in sorted(n for n in dir(errors) if n[0].isupper()):
        obj = getattr(errors, name)
        if inspect.isclass(obj) and issubclass(obj, BaseException):
            lines += [f"- `{name}`: {_doc(obj).splitlines()[0]}"]
    return "\n".join(lines).rstrip() + "\n"


def colours(page: str) -> str:
    """``page`` with its state colour table rendered from ``STATE_COLORS``."""
    begin, end = COLOURS
    head, rest = page.split(begin)
    tail = rest.split(end)[1]
    rows = ["| state | colour |", "|---|---|"]
    for state, hex_ in STATE_COLORS.items():
        name = COLOUR_NAMES[hex_]
        rows.append(
            f"| {state} | {name} `{hex_}` |" if hex_ != "#FFFFFF" else f"| {state} | {name} |"
        )
    return head + begin + "\n" + "\n".join(rows) + "\n" + end + tail


def main(argv: list[str]) -> int:
    """Write the pages, or with ``--check`` compare them."""
    pages = {OUT: render(), PICTURES: colours(PICTURES.read_text())}
    if "--check" in argv:
        stale = [p.name for p, text in pages.items() if not p.exists() or p.read_text() != text]
        for name in stale:
            print(f"docs/{name} is out of date: run python docs/api.py", file=sys.stderr)
        return 1 if stale else 0
    for path, text in pages.items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
