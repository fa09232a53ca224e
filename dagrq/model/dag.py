"""The graph model: ``DAG``, ``@dag.node``, validation on networkx. Pure: no redis, no rq.

A parameter named after another node is a data edge carrying that node's output; every other
parameter is a run parameter, validated by pydantic at submit time. A validated DAG is a
:class:`~dagrq.model.plan.Plan`: what a run is pinned to. Drawing (:mod:`dagrq.model.pictures`),
the cost report (:mod:`dagrq.model.preflight`) and the in-process executor
(:mod:`dagrq.model.local`) work from that plan; :meth:`DAG.submit` is the one hook up into the
client.

Example (in a module of its own, so workers can import the functions)::

    dag = DAG("doc")

    @dag.node
    def a(x: int) -> int:
        return x + 1

    @dag.node
    def b(a: int) -> int:          # edge a -> b, receives a's output
        return a * 2

    @dag.node
    def c(a: int, b: int) -> int:  # a join: waits for a and b
        return a + b

    dag.joins            # ['c']
    dag.run_local(x=1)   # {'a': 2, 'b': 4, 'c': 6}
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from functools import cached_property
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, overload

import networkx as nx
from pydantic import BaseModel, ValidationError

from ..errors import DAGError, NodeDefinitionError, ParameterError
from . import commands, params
from .cache import DEFAULT_MAX_ENTRIES, Cache, refreshed
from .codec import SerializerName, get_codec
from .events import Trigger, check_name
from .hooks import Callback, declared_hooks
from .local import run_local
from .node import Node
from .objects import OutputStore
from .options import NodeOptions, option_error
from .pictures import to_dot, to_mermaid
from .plan import NodeSpec, Plan
from .queues import default_queue_name
from .schedules import LOGICAL_PARAMS, Schedule, logical_defaults
from .scheduling import Scheduling
from .status import RunStatus
from .validation import Validated, validate
from .wait_nodes import WaitingNodes

if TYPE_CHECKING:
    from ..client import Run

P = ParamSpec("P")
R = TypeVar("R")

_DAG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")
#: default lifetime of everything a run writes, in seconds (refreshed on every write)
DEFAULT_TTL_S = 24 * 3600
#: default largest output a node may store
DEFAULT_MAX_OUTPUT_BYTES = 10 * 2**20
#: the largest output with an object store: no limit in practice
UNLIMITED = 2**62
#: the largest value Redis stores by default (``proto-max-bulk-len``)
REDIS_MAX_VALUE = 512 * 2**20


class DAG(WaitingNodes, Scheduling):
    """A named workflow of nodes. The name scopes queue names and Redis keys.

    Args:
        name: ASCII letters, digits, ``_`` and ``-`` (it is part of queue names and keys).
        serializer: ``"json"`` (default; pydantic JSON, no worker unpickles anything) or
            ``"pickle"``.
        ttl_s: seconds every key of a run lives after its last write (default one day).
        queue: the RQ queue of the non-join nodes (default ``dagrq.<name>``).
        max_output_bytes: the largest output a node may store (default 10 MiB; a node's own
            ``max_output_bytes=`` overrides it; no limit by default with an
            ``output_store``). Redis holds every output in memory: keep big ones in an
            object store (``output_store=``), or pass them by reference (a path, a URL).
        params: the run parameters, declared up front. Then a node parameter that is neither
            a node nor one of these is refused at validation. Without it, any such parameter
            is a run parameter, except one a slip away from a node's name (``totlas`` for
            ``totals``), refused with "did you mean". ``connection``, ``run_name`` and
            ``run_tags`` are ``submit``'s own and can never be run parameters.
        schedule: a cron string: the schedule named ``default`` (see :meth:`schedule`).
        max_active_runs: at most this many runs of the DAG run at once; more wait in state
            ``queued`` (none of their nodes starts) and start in order of priority, then
            submission (see docs/flow-control.md).
        cache: the default of every node's ``cache=`` (branches excepted): a node whose code
            and inputs did not change ends ``cached`` with its kept output (docs/caching.md).
        cache_max_entries: entries kept for the DAG (default 10,000); the oldest go first.
        triggers: ``[dagrq.on_event(name, params=fn)]``: each event of that name starts one
            run (docs/waits.md).
        emits: an event name emitted when a run succeeds (data: the run's id and DAG), so
            other DAGs can be triggered by it.
        on_success, on_failure, on_retry: alert hooks, each called with a
            :class:`~dagrq.model.hooks.HookEvent` once per run end (or failed attempt to be
            retried) by a worker; one that raises is logged and changes nothing.
        webhook: an http(s) URL POSTed the run's status JSON at every run end (retried on
            5xx). See docs/observability.md.
        output_store: an fsspec URL (``"file:///mnt/shared/dagrq"``, ``"s3://bucket/prefix"``
            with s3fs) where every serialized output, map item or item result over
            ``offload_over`` is kept as an object; Redis keeps a reference, readers fetch it,
            and the reconciler deletes a run's objects once the run is gone (docs/scale.md).
        offload_over: the size from which a value goes to ``output_store`` (default
            ``"1MB"``; bytes, or ``"512KiB"``, ``"10MB"`` ...).

    Raises:
        DAGError: for a bad name, serializer, ttl, schedule, max_active_runs, trigger,
            event name, hook, webhook URL, output store or offload size.
    """

    def __init__(
        self,
        name: str,
        *,
        serializer: SerializerName = "json",
        ttl_s: int = DEFAULT_TTL_S,
        queue: str | None = None,
        max_output_bytes: int | None = None,
        params: Sequence[str] | None = None,
        schedule: str | None = None,
        max_active_runs: int | None = None,
        cache: bool = False,
        cache_max_entries: int = DEFAULT_MAX_ENTRIES,
        triggers: Sequence[Trigger] = (),
        emits: str | None = None,
        on_success: Callback | None = None,
        on_failure: Callback | None = None,
        on_retry: Callback | None = None,
        webhook: str | None = None,
        output_store: str | None = None,
        offload_over: str | int = "1MB",
    ) -> None:
        # long: each DAG option checked where it is declared, one after another
        if not isinstance(name, str) or not _DAG_NAME.match(name):
            raise DAGError(
                f"DAG name {name!r} is not allowed: use ASCII letters, digits, '_' and '-' "
                "(it is part of RQ queue names and Redis keys)"
            )
        try:
            self.codec = get_codec(serializer)
        except ValueError as exc:
            raise DAGError(f"DAG {name!r}: {exc}") from None
        if ttl_s <= 0:
            raise DAGError(f"DAG {name!r}: ttl_s must be a positive number of seconds")
        #: where outputs over ``offload_over`` go instead of Redis (docs/scale.md), or None
        self.output_store = None
        if output_store is not None:
            self.output_store = OutputStore.of(name, output_store, offload_over)
        if max_output_bytes is None:  # an object store takes any size
            max_output_bytes = DEFAULT_MAX_OUTPUT_BYTES if output_store is None else UNLIMITED
        if max_output_bytes <= 0:
            raise DAGError(f"DAG {name!r}: max_output_bytes must be a positive number of bytes")
        if output_store is None and max_output_bytes > REDIS_MAX_VALUE:
            raise DAGError(
                f"DAG {name!r}: max_output_bytes {max_output_bytes} is over the 512 MiB Redis "
                "takes as one value; keep big outputs in an object store (output_store=)"
            )
        if max_active_runs is not None and not _count(max_active_runs):
            raise DAGError(f"DAG {name!r}: max_active_runs must be >= 1, not {max_active_runs!r}")
        #: runs that may run at once; more wait ``queued`` (see docs/flow-control.md)
        self.max_active_runs = max_active_runs
        if not _count(cache_max_entries):
            raise DAGError(f"DAG {name!r}: cache_max_entries must be >= 1")
        #: the default of every node's ``cache=``, and the entries kept (docs/caching.md)
        self.cache, self.cache_max_entries = bool(cache), int(cache_max_entries)
        self.max_output_bytes = int(max_output_bytes)
        bad = [t for t in triggers if not isinstance(t, Trigger)]
        if bad:
            raise DAGError(f"DAG {name!r}: trigger {bad[0]!r} is not dagrq.on_event(name, ...)")
        #: the events that start runs of this DAG, and the one its successful runs emit
        self.triggers: tuple[Trigger, ...] = tuple(triggers)
        self.emits = None if emits is None else check_name(emits, f"DAG {name!r}: emits")
        #: alert hooks (docs/observability.md)
        self.hooks = declared_hooks(
            name, on_success=on_success, on_failure=on_failure, on_retry=on_retry, webhook=webhook
        )
        self.max_output_bytes = int(max_output_bytes)
        self.name = name
        self.serializer: str = serializer
        self.ttl_s = int(ttl_s)
        self.queue_name = queue or default_queue_name(name)
        #: the run parameters declared up front (``params=``): then any other parameter that
        #: is not a node is refused; without, only one whose name is close to a node's
        self.declared_params = None if params is None else tuple(params)
        self._nodes: list[Node[Any, Any]] = []
        self._schedules: list[Schedule] = []
        if schedule is not None:
            self.schedule(schedule, name="default")

    def __repr__(self) -> str:
        return f"<dagrq.DAG {self.name} nodes={len(self._nodes)}>"

    # ---------------------------------------------------------------- declaring
    @overload
    def node(self, fn: Callable[P, R], /) -> Node[P, R]: ...

    @overload
    def node(
        self, fn: None = None, /, **options: Any
    ) -> Callable[[Callable[P, R]], Node[P, R]]: ...

    def node(
        self, fn: Callable[P, R] | None = None, /, **options: Any
    ) -> Node[P, R] | Callable[[Callable[P, R]], Node[P, R]]:
        """Declare a node, bare (``@dag.node``) or with options (``@dag.node(retry=3)``).

        Options are :class:`~dagrq.model.options.NodeOptions` fields: ``name``, ``queue``,
        ``retry``, ``timeout``, ``trigger``, ``result_ttl``, ``after``. The returned
        :class:`Node` calls the function when called, so it stays unit-testable.

        Raises:
            NodeDefinitionError: an unknown or ill-typed option, or an unsupported
                parameter kind.
        """
        try:
            opts = NodeOptions(**options)
        except ValidationError as exc:
            refused = exc
            target = getattr(fn, "__name__", None) or options.get("name")
            if target is None:  # @dag.node(...) before its function: say it when it comes

                def refuse(func: Callable[P, R]) -> Node[P, R]:
                    name = getattr(func, "__name__", None) or repr(func)
                    raise NodeDefinitionError(option_error(self.name, name, refused, options))

                return refuse
            raise NodeDefinitionError(option_error(self.name, target, exc, options)) from None

        def register(func: Callable[P, R]) -> Node[P, R]:
            if isinstance(func, Node):
                func = func.fn
            if not callable(func):
                raise NodeDefinitionError(f"@{self.name}.node needs a function, got {func!r}")
            return self._add(Node(func, opts))

        return register(fn) if fn is not None else register

    def map(
        self, parent: str, /, *, chunk: int = 1, **options: Any
    ) -> Callable[[Callable[P, R]], Node[P, R]]:
        """Declare a mapped node: it runs once per item of node ``parent``'s output.

        The function's parameter named ``parent`` receives one item; its other parameters are
        as for :meth:`node` (other parents' whole outputs, run parameters). A node downstream
        that takes this node's name receives the list of all item results, in item order.
        ``chunk`` items share one RQ job (results and order are the same). ``options`` are
        :meth:`node`'s.

        Raises:
            NodeDefinitionError: a chunk below 1 or an invalid option; :meth:`validate` also
                refuses a function without a parameter named ``parent``.
        """
        if not isinstance(chunk, int) or chunk < 1:
            raise NodeDefinitionError(
                f"@{self.name}.map({parent!r}): chunk={chunk!r} must be a whole number >= 1"
            )
        register = self.node(**options)

        def mapped(fn: Callable[P, R]) -> Node[P, R]:
            new = register(fn)
            new.map_over, new.chunk = parent, chunk
            return new

        return mapped

    def command(
        self,
        name: str,
        argv: Sequence[str],
        *,
        inputs: Sequence[str] = (),
        output: Any = str,
        image: str | None = None,
        env: Mapping[str, str] | None = None,
        network: bool = False,
        pull: bool = False,
        map_over: str | None = None,
        chunk: int = 1,
        **options: Any,
    ) -> Node[Any, Any]:
        """Declare a command node: it runs ``argv`` (a program on the worker's host, or in the
        container ``image``) and its output is the node's (see :mod:`dagrq.model.commands`).

        ``inputs`` are its parents: their outputs arrive as one JSON object on stdin and as
        files ``$DAGRQ_IN/<name>.json``. Its output is ``$DAGRQ_OUT`` when written, else
        stdout, parsed as JSON into ``output`` (``str``: the raw text). ``env`` adds
        environment variables; a container has no network unless ``network=True`` and pulls
        its image only with ``pull=True``. ``map_over`` makes it a mapped node (one run per
        item of that parent, ``chunk`` items per job); ``options`` are :meth:`node`'s
        (``timeout``, ``retry``, ``queue``, ``trigger``...). Children use it like any node.

        Raises:
            NodeDefinitionError: an argv that is not a list of strings, env values that are
                not strings, or an invalid option.
        """
        if isinstance(argv, str):
            raise NodeDefinitionError(
                f"command node {name!r}: argv is a string; give a list (no shell unless you "
                'call one: ["/bin/sh", "-c", "..."])'
            )
        inputs = list(inputs)
        if map_over is not None and map_over not in inputs:
            inputs.append(map_over)
        program = commands.Command(
            name,
            tuple(argv),
            tuple(inputs),
            output,
            image,
            dict(env or {}),
            network,
            pull,
            options.get("timeout"),
        )
        if map_over is not None:
            return self.map(map_over, chunk=chunk, name=name, **options)(program)
        return self.node(name=name, **options)(program)

    @overload
    def branch(self, fn: Callable[P, R], /) -> Node[P, R]: ...

    @overload
    def branch(
        self, fn: None = None, /, **options: Any
    ) -> Callable[[Callable[P, R]], Node[P, R]]: ...

    def branch(
        self, fn: Callable[P, R] | None = None, /, **options: Any
    ) -> Node[P, R] | Callable[[Callable[P, R]], Node[P, R]]:
        """Declare a branch: a node that returns the name (or a list of names) of the children
        to follow; its other children end ``skipped`` and the skip goes on by their rules.
        The names are also its output. ``options`` are :meth:`node`'s.

        Annotate the return as ``Literal["a", "b"]`` (or a list of it) and :meth:`validate`
        checks the names are children; any way, a name that is not a child fails the branch
        at run time, naming the valid ones.

        Raises:
            NodeDefinitionError: as :meth:`node`; :meth:`validate` refuses a branch without
                children.
        """
        register = self.node(**options)

        def branching(func: Callable[P, R]) -> Node[P, R]:
            new = register(func)
            new.branch = True
            return new

        return branching(fn) if fn is not None else branching

    def _add(self, node: Node[Any, Any]) -> Node[Any, Any]:
        """Add a node and forget everything derived from the old set of nodes."""
        self._nodes.append(node)
        for derived in ("_validated", "plan", "nodes"):
            self.__dict__.pop(derived, None)
        return node

    # --------------------------------------------------------------- validation
    @cached_property
    def nodes(self) -> dict[str, Node[Any, Any]]:
        """The nodes by name (the last one wins when names repeat; :meth:`validate` refuses).
        Computed once per change of the DAG: every worker job looks its node up here."""
        return {n.name: n for n in self._nodes}

    def validate(self) -> None:
        """Check the DAG; nothing reaches Redis before this passes.

        Raises:
            DuplicateNodeError: two nodes share a name.
            UnknownNodeError: ``after=`` or ``@dag.map`` names no node.
            CycleError: the edges loop; the message spells the cycle ``a -> b -> a``.
            NodeImportError: a node function a worker could not import by its dotted path
                (a lambda, a closure, or ``__main__`` without a file).
            NodeDefinitionError: an empty DAG, a rule its parents cannot satisfy, or one run
                parameter with two different types.
            DAGError: a schedule's ``params`` are not valid run parameters of the DAG.
        """
        _ = self._validated
        for schedule in self._schedules:
            try:
                self.validate_params(schedule.params)
            except ParameterError as exc:
                raise DAGError(f"DAG {self.name!r}, schedule {schedule.name!r}: {exc}") from None

    @cached_property
    def _validated(self) -> Validated:
        return validate(
            self.name,
            self._nodes,
            declared_params=self.declared_params,
            queue_name=self.queue_name,
            ttl_s=self.ttl_s,
            max_output_bytes=self.max_output_bytes,
            serializer=self.serializer,
            cache=self.cache,
        )

    @property
    def graph(self) -> nx.DiGraph:
        """The validated ``networkx.DiGraph``; edge attribute ``data`` is False for ``after=``."""
        return self._validated.graph

    @property
    def specs(self) -> dict[str, NodeSpec]:
        """:class:`NodeSpec` per node, in a deterministic topological order."""
        return self._validated.specs

    @property
    def joins(self) -> list[str]:
        """The join nodes (two or more upstream edges of any kind), in topological order."""
        return [s.name for s in self.specs.values() if s.is_join]

    @property
    def roots(self) -> list[str]:
        """Nodes with no upstream edge: enqueued at submit."""
        return [s.name for s in self.specs.values() if not s.parents]

    @property
    def sinks(self) -> list[str]:
        """Nodes with no downstream edge: their results are what ``dagrq run`` prints."""
        return [s.name for s in self.specs.values() if not s.children]

    @property
    def queues(self) -> list[str]:
        """Every RQ queue this DAG's nodes run on, sorted."""
        return sorted({s.queue_name for s in self.specs.values()})

    @property
    def params_model(self) -> type[BaseModel]:
        """The pydantic model of the run parameters (``extra="forbid"``)."""
        return self._validated.params_model

    @property
    def param_types(self) -> dict[str, str]:
        """``{run parameter: type name}``, for pictures and reports."""
        return params.type_names(self.params_model)

    @cached_property
    def plan(self) -> Plan:
        """The validated :class:`~dagrq.model.plan.Plan`: what a run of this DAG is pinned to
        (computed once; every worker job compares its hash)."""
        return Plan(
            self.name,
            self.serializer,
            self.ttl_s,
            dict(self.specs),
            self.max_active_runs,
            self.emits,
            bool(self.hooks),
            self.output_store,
        )

    @property
    def plan_hash(self) -> str:
        """The plan's content hash: the DAG's version."""
        return self.plan.hash

    # --------------------------------------------------------------- pictures
    def to_dot(self, run: Run | RunStatus | None = None) -> str:
        """The DAG as Graphviz DOT text (see :func:`dagrq.model.pictures.to_dot`): joins with a
        double border, mapped nodes as stacks, ``after=`` edges dashed, run parameters as
        inputs. With ``run`` (a ``Run`` or a ``RunStatus``), nodes are filled by state.
        """
        return to_dot(self.plan, self.param_types, _status_of(run))

    def to_mermaid(self, run: Run | RunStatus | None = None) -> str:
        """The DAG as a Mermaid flowchart, with the same facts as :meth:`to_dot`."""
        return to_mermaid(self.plan, self.param_types, _status_of(run))

    # ------------------------------------------------------------ parameters
    def validate_params(
        self, values: Mapping[str, Any], *, from_strings: bool = False
    ) -> dict[str, Any]:
        """Validate and coerce run parameters; return them JSON-ready, defaults filled in.

        With ``from_strings`` (the CLI's ``-p key=value``), a value that does not validate
        as the string it is is tried as JSON, so ``-p ids=[1,2]`` gives a list.

        Raises:
            ParameterError: naming the parameter, the node(s) taking it and the expected type.
        """
        model = self.params_model
        missing = [p for p in LOGICAL_PARAMS if p in model.model_fields and p not in values]
        if missing:  # a run started by hand: its logical time is now
            now = logical_defaults(datetime.now(UTC))
            values = {**{p: now[p] for p in missing}, **values}
        takers = {
            p: [n.name for n in self._nodes if p in n.signature.parameters]
            for p in model.model_fields
        }
        return params.validate(
            model, values, dag=self.name, takers=takers, from_strings=from_strings
        )

    # ------------------------------------------------------------------ running
    def submit(
        self,
        connection: Any,
        *,
        run_name: str | None = None,
        run_tags: Sequence[str] = (),
        priority: int = 0,
        refresh: bool | Sequence[str] = False,
        **values: Any,
    ) -> Run:
        """Validate, then enqueue one run on ``connection`` (a ``redis.Redis``) with the run
        parameters ``values``; ``run_name`` and ``run_tags`` label it (``dagrq runs``).
        ``priority`` (-1000..1000, default 0) is added to each node's: higher runs first
        among waiting work of the same queue, and a queued run (``max_active_runs``) with a
        higher priority starts first. ``refresh`` (``True``, or node names) makes the run
        ignore and overwrite the cache of those nodes and every node downstream of them.

        Returns the :class:`~dagrq.client.Run`. A refused submit (invalid DAG or parameters)
        raises before any write, so it leaves nothing in Redis. ``connection``, ``run_name``
        and ``run_tags`` cannot be run parameter names (validation refuses them), nor
        ``priority`` and ``refresh``.

        Raises:
            DAGError: the DAG is invalid.
            ParameterError: a run parameter is missing or ill-typed.
        """
        from ..client import submit  # the one upward hook: the model itself never imports redis

        return submit(
            self,
            connection,
            values,
            name=run_name,
            tags=run_tags,
            priority=priority,
            refresh=refreshed(self.name, self.graph, refresh),
        )

    def run_local(
        self,
        *,
        cache_store: Cache | None = None,
        refresh: bool | Sequence[str] = False,
        signals: Mapping[str, Any] | None = None,
        **values: Any,
    ) -> dict[str, Any]:
        """Run the whole DAG in this process, in topological order, without Redis
        (:func:`dagrq.model.local.run_local`).

        Same validation, the same trigger rules and the same serialization round trip as a
        distributed run. Returns ``{node: output}`` for the nodes that succeeded (or were
        cached). Cached nodes use the same keys as workers, in ``cache_store`` (a
        :class:`~dagrq.model.cache.Cache`: ``dagrq.store.cache.RedisCache(connection,
        dag.name)`` shares the workers' entries) or, by default, one in-process cache for the
        whole process; ``refresh`` as in :meth:`submit`. Waits wait here: a timer sleeps, a
        sensor pokes, a sub-DAG runs its child DAG in-process, and a wait node takes its value
        from ``signals`` (``{node: value}``).

        Raises:
            DAGError: the DAG is invalid.
            ParameterError: a run parameter is missing or ill-typed.
            RunFailed: a node failed; ``.failed`` maps node to error, ``.results`` holds
                the outputs of the nodes that succeeded.
        """
        self.validate()
        params = self.validate_params(values)
        wanted = refreshed(self.name, self.graph, refresh)
        return run_local(self.plan, self.nodes, self.codec, params, cache_store, wanted, signals)


def _count(value: Any) -> bool:
    """Whether ``value`` is a whole number >= 1 (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 1


def _status_of(run: Any) -> RunStatus | None:
    """A RunStatus from a Run (read now) or a RunStatus; None stays None."""
    if run is None or isinstance(run, RunStatus):
        return run
    status: RunStatus = run.status()
    return status
