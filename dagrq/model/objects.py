"""Big outputs out of Redis: an object store (fsspec) and the references Redis keeps instead.

``DAG(output_store="file:///mnt/shared/dagrq", offload_over="1MB")`` stores every serialized
output, map item and item result longer than the threshold as an object under the store's URL
(``<store>/<run id>/<node>/<uuid>``; a cached entry's under ``<store>/_cache/``), and Redis
keeps a reference: :data:`MAGIC` and a small JSON document naming the run, the node and the
URL. Every codec resolves a reference before it deserializes (:func:`resolve`), so readers
(a child's inputs, joins, ``Run.result``, ``dagrq result``) see the value as if Redis held it.

No serialized value starts with a NUL byte (JSON is text, pickle starts with ``0x80``), so a
reference is never mistaken for a value. Objects are written once under a fresh name, so a
stale attempt's late write never replaces the current one's. Redis TTLs cannot delete
objects: :func:`sweep` (run by the reconciler) deletes those of runs that are gone.

Examples:
    >>> parse_size("1MB"), parse_size("512KiB"), parse_size(2048)
    (1000000, 524288, 2048)
    >>> is_ref(b'{"a": 1}')
    False
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..errors import DAGError, OutputMissing

#: the first bytes of a reference (no serialized value starts with NUL)
MAGIC = b"\x00dagrq-object:"
#: the folder, under a store, of the objects of cached entries
CACHE_DIR = "_cache"

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9}
_UNITS |= {"kib": 2**10, "mib": 2**20, "gib": 2**30}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_size(size: str | int) -> int:
    """A size in bytes from ``2048``, ``"1MB"`` (10**6), ``"1MiB"`` (2**20), ``"500kb"``, ...

    Raises:
        ValueError: naming the text and the units allowed.
    """
    if isinstance(size, int) and not isinstance(size, bool):
        if size < 0:
            raise ValueError(f"size {size} is negative")
        return size
    match = _SIZE.match(str(size))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"size {size!r} is not a size: write e.g. 1048576, '1MB' or '1MiB'")
    return int(float(match.group(1)) * _UNITS[unit])


def _fs(url: str) -> tuple[Any, str]:
    """fsspec's filesystem and path of ``url`` (folders made on write for ``file://``)."""
    import fsspec  # a dagrq without an output store never imports it

    protocol = url.split("://", 1)[0] if "://" in url else "file"
    options = {"auto_mkdir": True} if protocol == "file" else {}
    fs, path = fsspec.core.url_to_fs(url, **options)
    return fs, path


@dataclass(frozen=True)
class Ref:
    """What Redis keeps of an offloaded value: where it is, and whose it is."""

    url: str
    run: str
    node: str
    size: int

    def to_bytes(self) -> bytes:
        """:data:`MAGIC` and this reference as JSON."""
        data = {"url": self.url, "run": self.run, "node": self.node, "size": self.size}
        return MAGIC + json.dumps(data, sort_keys=True).encode()

    def missing(self, why: str) -> OutputMissing:
        """The error for this object being unreadable, naming run, node and URL."""
        return OutputMissing(
            f"output of node {self.node!r} in run {self.run!r} is gone from the object store: "
            f"{self.url} ({why}); objects are deleted when their run expires or is purged"
        )


def is_ref(blob: bytes | None) -> bool:
    """True when ``blob`` is a reference to an object, not a value."""
    return blob is not None and blob[:1] == b"\x00" and blob.startswith(MAGIC)


def ref_of(blob: bytes) -> Ref:
    """The :class:`Ref` in ``blob`` (which :func:`is_ref`)."""
    data = json.loads(blob[len(MAGIC) :])
    return Ref(data["url"], data["run"], data["node"], int(data["size"]))


def resolve(blob: bytes) -> bytes:
    """``blob`` itself, or the object it refers to, read whole.

    Raises:
        OutputMissing: naming the run, the node and the URL, when the object cannot be read.
    """
    if not is_ref(blob):
        return blob
    ref = ref_of(blob)
    fs, path = _fs(ref.url)
    try:
        data: bytes = fs.cat_file(path)
    except OSError as exc:
        raise ref.missing(_why(exc)) from None
    return data


def _why(exc: OSError) -> str:
    """An object store's error in a few words."""
    if isinstance(exc, FileNotFoundError):
        return "no such object"
    return str(exc) or type(exc).__name__


def head(ref: Ref, size: int) -> bytes:
    """The first ``size`` bytes of the object ``ref`` names (a preview reads no more).

    Raises:
        OutputMissing: when the object cannot be read.
    """
    fs, path = _fs(ref.url)
    try:
        data: bytes = fs.cat_file(path, start=0, end=size)
    except OSError as exc:
        raise ref.missing(_why(exc)) from None
    return data


@dataclass(frozen=True)
class OutputStore:
    """Where a DAG's big values go (``url``) and from which size on (``over`` bytes)."""

    url: str
    over: int

    @classmethod
    def of(cls, dag: str, url: str, over: str | int) -> OutputStore:
        """The store of DAG ``dag``, checked: a URL fsspec knows, a size.

        Raises:
            DAGError: naming the DAG, the option and the fix.
        """
        try:
            size = parse_size(over)
        except ValueError as exc:
            raise DAGError(f"DAG {dag!r}: offload_over: {exc}") from None
        if not isinstance(url, str) or "://" not in url:
            raise DAGError(
                f"DAG {dag!r}: output_store {url!r} is not a URL: write e.g. "
                "'file:///mnt/shared/dagrq' or 's3://bucket/prefix'"
            )
        try:
            _fs(url)
        except (ImportError, ValueError) as exc:
            raise DAGError(
                f"DAG {dag!r}: output_store {url!r} cannot be opened: {exc} "
                "(for s3:// install s3fs: pip install 'dagrq[s3]')"
            ) from None
        return cls(url.rstrip("/"), size)

    def offload(self, blob: bytes, run_id: str, node: str) -> bytes:
        """``blob`` itself when it is at most :attr:`over` bytes (or already a reference),
        else a reference to a new object holding it."""
        if len(blob) <= self.over or is_ref(blob):
            return blob
        return self.put(blob, f"{run_id}/{node}/{uuid.uuid4().hex}", run_id, node)

    def put(self, blob: bytes, name: str, run_id: str, node: str) -> bytes:
        """Write ``blob`` as object ``name`` under the store; its reference."""
        url = f"{self.url}/{name}"
        fs, path = _fs(url)
        fs.pipe_file(path, blob)
        return Ref(url, run_id, node, len(blob)).to_bytes()

    def cached(self, blob: bytes, dag: str, node: str, key: str) -> bytes:
        """A cache entry's copy of ``blob`` (a value, or a reference to a run's object, which
        goes when its run does): its own object when over the threshold, else ``blob``."""
        value = resolve(blob) if is_ref(blob) else blob
        if len(value) <= self.over:
            return value
        return self.put(value, f"{CACHE_DIR}/{dag}/{node}/{key}", f"cache:{dag}", node)

    def sweep(
        self,
        runs_alive: Callable[[list[str]], list[bool]],
        entries_alive: Callable[[list[tuple[str, str, str]]], list[bool]],
    ) -> int:
        """Delete the objects of runs that are gone and of cache entries that are gone;
        ``runs_alive`` and ``entries_alive`` answer, in order, for each run id and each
        ``(dag, node, key)``. Returns how many folders or objects were deleted."""
        fs, root = _fs(self.url)
        fs.invalidate_cache()  # a listing cached by this process (s3fs) may be stale
        if not fs.exists(root):
            return 0
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False)]
        runs = [n for n in names if n != CACHE_DIR]
        gone = [f"{root}/{r}" for r, alive in zip(runs, runs_alive(runs), strict=True) if not alive]
        if CACHE_DIR in names:
            found = fs.glob(f"{root}/{CACHE_DIR}/*/*/*")
            entries = [tuple(p.rstrip("/").rsplit("/", 3)[1:]) for p in found]
            alive = entries_alive(entries)
            gone += [p for p, ok in zip(found, alive, strict=True) if not ok]
        for path in gone:
            fs.rm(path, recursive=True)
        return len(gone)

    def delete_run(self, run_id: str) -> None:
        """Delete every object of run ``run_id`` (a purge)."""
        fs, root = _fs(f"{self.url}/{run_id}")
        fs.invalidate_cache()
        if fs.exists(root):
            fs.rm(root, recursive=True)
