"""Command nodes: a program, on the worker's host or in a container image, as a node.

``dag.command(name, argv, inputs=[...], image=None, output=type, env=None, ...)`` declares
one (see :meth:`dagrq.model.dag.DAG.command`). Its :class:`Command` is the node's function: called
with its parents' outputs, it runs ``argv`` and returns the program's output.

- Inputs: one JSON object ``{parent: output}`` on stdin, and one file per parent,
  ``<name>.json``, in ``$DAGRQ_IN`` (``/dagrq/in`` in a container, mounted read-only).
- Output: ``$DAGRQ_OUT`` (``/dagrq/out.json`` in a container, its folder mounted read-write)
  when the program writes it, else stdout; parsed as JSON into ``output=`` (``str``: the text
  as it is, less one final newline).
- Environment: ``env=``, plus ``DAGRQ_RUN_ID``, ``DAGRQ_NODE``, ``DAGRQ_ATTEMPT``, ``DAGRQ_IN``,
  ``DAGRQ_OUT``; a container gets only these (and no network unless ``network=True``).
- Failures: a non-zero exit fails the node with ``exit code N`` and the last lines of
  stderr; output that does not parse fails it with the parse error; past ``timeout=`` the
  whole process group (or the container) is killed: ``timed out after N s``. Any exception
  that stops the node (a cancel, RQ's own timeout) kills the program first. The program's
  stdout and stderr go to the node's log (``dagrq logs``).
- Security: argv comes from the DAG definition the worker loaded, never from Redis; inputs are
  data on stdin and in files, never put into a command line.

No Redis here: the process handling only (``run_local`` runs command nodes too).
"""

from __future__ import annotations

import contextlib
import contextvars
import ctypes
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import to_json

from ..errors import CommandFailed, NodeDefinitionError
from .codec import type_adapter

#: ``DAGRQ_CONTAINER_RUNTIME``: ``podman`` or ``docker``; default the first found on PATH
RUNTIME_ENV = "DAGRQ_CONTAINER_RUNTIME"
#: stderr lines quoted in the error of a failed command
TAIL_LINES = 5
#: where a container sees its inputs and writes its output
CONTAINER_IN, CONTAINER_OUT = "/dagrq/in", "/dagrq/out.json"


@dataclass(frozen=True)
class Context:
    """Which run, node and attempt a command runs for (set by the caller around the call)."""

    run_id: str
    node: str
    attempt: int


#: the attempt being run in this thread; ``local`` outside a worker
CURRENT: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "dagrq_command_context", default=None
)


@dataclass(frozen=True)
class Command:
    """A command node's program; calling it runs it (see the module).

    Attributes:
        name: the node's name.
        argv: the program and its arguments (no shell unless it names one).
        inputs: the parents whose outputs it gets.
        output: the type stdout (or the output file) is parsed into; ``str``: raw text.
        image: run inside this container image; None: a local process.
        env: extra environment variables.
        network: a container may use the network.
        pull: a container's image may be pulled (else it must be present).
        timeout: seconds before the program is killed (the node's ``timeout=``).
    """

    name: str
    argv: tuple[str, ...]
    inputs: tuple[str, ...] = ()
    output: Any = str
    image: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    network: bool = False
    pull: bool = False
    timeout: int | None = None

    def __post_init__(self) -> None:
        if not self.argv or not all(isinstance(a, str) for a in self.argv):
            raise NodeDefinitionError(
                f"command node {self.name!r}: argv must be a non-empty list of strings, e.g. "
                '["/bin/sh", "-c", "cat | wc -c"]'
            )
        bad = [k for k, v in self.env.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise NodeDefinitionError(
                f"command node {self.name!r}: env values must be strings (not {bad[0]!r})"
            )

    @property
    def __signature__(self) -> inspect.Signature:
        """One keyword parameter per input, returning ``output``: what makes the edges."""
        params = [
            inspect.Parameter(p, inspect.Parameter.KEYWORD_ONLY, annotation=Any)
            for p in self.inputs
        ]
        return inspect.Signature(params, return_annotation=self.output)

    @property
    def shown(self) -> str:
        """The command as a person reads it (``dagrq plan``, ``dagrq why``)."""
        return shown(self.argv, self.image)

    def __call__(self, **inputs: Any) -> Any:
        """Run the program with ``inputs`` and return its parsed output.

        Raises:
            CommandFailed: non-zero exit, time-out, unparsable output, no container runtime.
        """
        context = CURRENT.get() or Context("local", self.name, 1)
        with tempfile.TemporaryDirectory(prefix="dagrq-cmd-") as tmp:
            folder = Path(tmp)
            (folder / "in").mkdir()
            for parent, value in inputs.items():
                (folder / "in" / f"{parent}.json").write_bytes(to_json(value))
            stdin = to_json(inputs)
            if self.image is None:
                argv, env = list(self.argv), self._env(context, folder / "in", folder / "out.json")
                out_file = folder / "out.json"
                stdout = self._run(argv, env, stdin, None)
            else:
                name = f"dagrq-{uuid.uuid4().hex[:12]}"
                argv = self._container_argv(context, folder, name)
                out_file = folder / "out.json"
                stdout = self._run(argv, dict(os.environ), stdin, name)
            text = out_file.read_text() if out_file.exists() else stdout
        return self._parse(text)

    # -------------------------------------------------------------- helpers
    def _env(self, context: Context, inputs: Path | str, out: Path | str) -> dict[str, str]:
        return {
            **self.env,
            "DAGRQ_RUN_ID": context.run_id,
            "DAGRQ_NODE": context.node,
            "DAGRQ_ATTEMPT": str(context.attempt),
            "DAGRQ_IN": str(inputs),
            "DAGRQ_OUT": str(out),
        }

    def _container_argv(self, context: Context, folder: Path, name: str) -> list[str]:
        runtime = container_runtime()
        argv = [runtime, "run", "--rm", "-i", "--name", name]
        argv += ["--pull", "missing" if self.pull else "never"]
        if not self.network:
            argv += ["--network", "none"]
        argv += ["-v", f"{folder}:/dagrq:rw", "-v", f"{folder / 'in'}:{CONTAINER_IN}:ro"]
        for key, value in self._env(context, CONTAINER_IN, CONTAINER_OUT).items():
            argv += ["-e", f"{key}={value}"]
        return [*argv, str(self.image), *self.argv]

    def _run(
        self, argv: list[str], env: dict[str, str], stdin: bytes, container: str | None
    ) -> str:
        # long: a process's whole life in one place: start, feed, wait, kill on any way out
        """Run ``argv`` in a process group of its own; its output lines to this process's
        stdout/stderr (the node's log); kill the group (and the container) on any way out."""
        full_env = env if container is not None else {**os.environ, **env}
        try:
            proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=full_env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        except OSError as exc:
            raise CommandFailed(
                f"command node {self.name!r}: cannot start {argv[0]!r}: {exc.strerror or exc}"
            ) from None
        out_chunks: list[bytes] = []
        err_lines: list[str] = []
        readers = [
            threading.Thread(target=_pump, args=(proc.stdout, out_chunks, None), daemon=True),
            threading.Thread(target=_pump, args=(proc.stderr, None, err_lines), daemon=True),
        ]
        for reader in readers:
            reader.start()
        started = time.monotonic()
        try:
            assert proc.stdin is not None
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.write(stdin)
            with contextlib.suppress(BrokenPipeError):
                proc.stdin.close()
            try:
                code = proc.wait(timeout=self.timeout)
            except subprocess.TimeoutExpired:
                _kill(proc, container)
                raise CommandFailed(
                    f"command node {self.name!r} timed out after {self.timeout} s"
                ) from None
        except BaseException:
            _kill(proc, container)
            raise
        finally:
            for reader in readers:
                reader.join(timeout=5)
            _kill_group(proc.pid)  # whatever it left behind
        stdout = b"".join(out_chunks).decode(errors="replace")
        if CURRENT.get() is not None:  # on a worker: into the node's log
            for line in stdout.splitlines():
                print(line)
            for line in err_lines:
                print(line, file=sys.stderr)
        if code != 0:
            tail = " | ".join(err_lines[-TAIL_LINES:]) or "no stderr"
            how = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
            took = time.monotonic() - started
            raise CommandFailed(
                f"command node {self.name!r} failed: {how} after {took:.1f} s; stderr: {tail}"
            )
        return stdout

    def _parse(self, text: str) -> Any:
        if self.output is str:
            return text[:-1] if text.endswith("\n") else text
        try:
            return type_adapter(self.output).validate_json(text)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise CommandFailed(
                f"command node {self.name!r}: its output is not {_type_name(self.output)}: "
                f"{first['msg']} (output: {text[:200]!r})"
            ) from None


def container_runtime() -> str:
    """The container runtime to use: ``$DAGRQ_CONTAINER_RUNTIME``, else podman, else docker.

    Raises:
        CommandFailed: none is found.
    """
    chosen = os.environ.get(RUNTIME_ENV)
    for name in [chosen] if chosen else ["podman", "docker"]:
        found = shutil.which(name)
        if found:
            return found
    wanted = chosen or "podman or docker"
    raise CommandFailed(
        f"no container runtime: {wanted} is not on PATH; install podman (or docker), or set "
        f"{RUNTIME_ENV}"
    )


def command_of(fn: Any) -> Command | None:
    """The :class:`Command` behind a node's function, or None for a Python node."""
    return fn if isinstance(fn, Command) else None


def _pump(stream: Any, chunks: list[bytes] | None, lines: list[str] | None) -> None:
    for raw in iter(stream.readline, b""):
        if chunks is not None:
            chunks.append(raw)
        if lines is not None:
            lines.append(raw.decode(errors="replace").rstrip("\n"))
    stream.close()


def _kill(proc: subprocess.Popen[bytes], container: str | None) -> None:
    if container is not None:  # kill at once (a stop would wait), then remove
        for verb in (["kill"], ["rm", "-f"]):
            with contextlib.suppress(Exception):
                subprocess.run(
                    [container_runtime(), *verb, container], capture_output=True, timeout=30
                )
    _kill_group(proc.pid)
    with contextlib.suppress(Exception):
        proc.kill()
        proc.wait(timeout=10)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _die_with_parent() -> None:
    """In the child: SIGKILL when the worker process dies (Linux; elsewhere nothing)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def shown(argv: Sequence[str], image: str | None = None) -> str:
    """A command as a person reads it: quoted where needed, its image first.

    Examples:
        >>> shown(["/bin/sh", "-c", "cat | wc -c"], "localhost/tiny:1")
        '[localhost/tiny:1] /bin/sh -c "cat | wc -c"'
    """
    line = " ".join(_quote(a) for a in argv)
    return f"[{image}] {line}" if image else line


def _quote(arg: str) -> str:
    return json.dumps(arg) if not arg or any(c in arg for c in " \t\n\"'$`\\|&;<>()") else arg


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation)


@contextlib.contextmanager
def running(run_id: str, node: str, attempt: int) -> Iterator[None]:
    """Tell command nodes called inside which run, node and attempt they run for."""
    token = CURRENT.set(Context(run_id, node, attempt))
    try:
        yield
    finally:
        CURRENT.reset(token)
