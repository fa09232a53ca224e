"""The graph model: ``DAG``, ``@dag.node``, validation on networkx. Pure: no redis, no rq.

A parameter named after another node is a data edge carrying that node's output; every other
parameter is a run parameter, validated by pydantic at submit time.

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

import inspect
import re
import sys
import traceback
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import TYPE_CHECKING, Any, Generic, ParamSpec, TypeVar, get_type_hints, overload

import networkx as nx
from pydantic import BaseModel, ConfigDict, ValidationError, create_model

from . import keys
from .codec import SerializerName, get_codec
from .errors import (
    CycleError,
    DAGError,
    DuplicateNodeError,
    NodeDefinitionError,
    NodeImportError,
    ParameterError,
    RunFailed,
    UnknownNodeError,
)
from .options import NodeOptions
from .plan import NodeSpec, Plan
from .rules import decide

if TYPE_CHECKING:
    from .client import Run

P = ParamSpec("P")
R = TypeVar("R")

_DAG_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")

#: default lifetime of everything a run writes, in seconds (refreshed on every write)
DEFAULT_TTL_S = 24 * 3600


class Node(Generic[P, R]):
    """One decorated function: its name, options and signature. Calling it calls the function.

    Attributes:
        fn: the plain function.
        name: the node's name in the DAG.
        options: the :class:`~dagrq.options.NodeOptions` it was declared with.
    """

    def __init__(
        self,
        fn: Callable[P, R],
        options: NodeOptions,
        map_over: str | None = None,
        chunk: int = 1,
    ) -> None:
        self.fn = fn
        self.options = options
        #: the parent a mapped node (``@dag.map``) runs once per item of, else None
        self.map_over = map_over
        #: items per RQ job of a mapped node
        self.chunk = chunk
        self.name: str = options.name or fn.__name__
        self._raw_signature = inspect.signature(fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn
        for param in self._raw_signature.parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD, param.POSITIONAL_ONLY):
                raise NodeDefinitionError(
                    f"node {self.name!r}: parameter {param.name!r} is {param.kind.description}; "
                    "dagrq passes every input by keyword, declare it as a plain parameter"
                )

    @cached_property
    def signature(self) -> inspect.Signature:
        """The signature with string annotations (``from __future__ import annotations``)
        resolved in the function's module.

        Raises
        ------
        NodeDefinitionError
            when an annotation names something the module does not define.
        """
        try:
            hints = get_type_hints(self.fn, include_extras=True)
        except Exception as exc:
            raise NodeDefinitionError(
                f"node {self.name!r}: an annotation cannot be resolved ({one_line_error(exc)}); "
                "import or define that type in the node's module"
            ) from None
        raw = self._raw_signature
        params = [
            p.replace(annotation=hints.get(p.name, p.annotation)) for p in raw.parameters.values()
        ]
        return raw.replace(
            parameters=params, return_annotation=hints.get("return", raw.return_annotation)
        )

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<dagrq.Node {self.name}>"


class DAG:
    """A named workflow of nodes. The name scopes queue names and Redis keys.

    Parameters
    ----------
    name:
        letters, digits, ``_`` and ``-``.
    serializer:
        ``"json"`` (default; pydantic JSON, no worker unpickles anything) or ``"pickle"``.
    ttl_s:
        seconds every key of a run lives after its last write (default one day).
    queue:
        the RQ queue of the non-join nodes (default ``dagrq.<name>``).

    Raises
    ------
    DAGError
        for a bad name, serializer or ttl.
    """

    def __init__(
        self,
        name: str,
        *,
        serializer: SerializerName = "json",
        ttl_s: int = DEFAULT_TTL_S,
        queue: str | None = None,
    ) -> None:
        if not isinstance(name, str) or not _DAG_NAME.match(name):
            raise DAGError(f"DAG name {name!r} is not allowed; use letters, digits, '_' and '-'")
        try:
            self.codec = get_codec(serializer)
        except ValueError as exc:
            raise DAGError(f"DAG {name!r}: {exc}") from None
        if ttl_s <= 0:
            raise DAGError(f"DAG {name!r}: ttl_s must be a positive number of seconds")
        self.name = name
        self.serializer: str = serializer
        self.ttl_s = int(ttl_s)
        self.queue_name = queue or keys.default_queue_name(name)
        self._nodes: list[Node[Any, Any]] = []

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

        Options are :class:`~dagrq.options.NodeOptions` fields: ``name``, ``queue``, ``retry``,
        ``timeout``, ``trigger``, ``result_ttl``, ``after``. The returned :class:`Node` calls
        the function when called, so it stays unit-testable.

        Raises
        ------
        NodeDefinitionError
            for an unknown or ill-typed option, or an unsupported parameter kind.
        """
        try:
            opts = NodeOptions(**options)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"]) or "options"
            target = getattr(fn, "__name__", "node")
            hint = (
                "known options: " + ", ".join(NodeOptions.model_fields)
                if err["type"] == "extra_forbidden"
                else err["msg"]
            )
            raise NodeDefinitionError(
                f"@{self.name}.node on {target!r}: option {where!r} is not valid ({hint})"
            ) from None

        def register(func: Callable[P, R]) -> Node[P, R]:
            if isinstance(func, Node):
                func = func.fn
            if not callable(func):
                raise NodeDefinitionError(f"@{self.name}.node needs a function, got {func!r}")
            new = Node(func, opts)
            self._nodes.append(new)
            for derived in ("_validated", "plan", "nodes"):
                self.__dict__.pop(derived, None)
            return new

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

        Raises
        ------
        NodeDefinitionError
            for a chunk below 1 or an invalid option; :meth:`validate` also refuses a
            function without a parameter named ``parent``.
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

    # --------------------------------------------------------------- validation
    @cached_property
    def nodes(self) -> dict[str, Node[Any, Any]]:
        """The nodes by name (the last one wins when names repeat; :meth:`validate` refuses).
        Computed once per change of the DAG: every worker job looks its node up here."""
        return {n.name: n for n in self._nodes}

    def validate(self) -> None:
        """Check the DAG; nothing reaches Redis before this passes.

        Raises
        ------
        DuplicateNodeError
            two nodes share a name.
        UnknownNodeError
            ``after=`` names no node.
        CycleError
            the edges loop; the message spells the cycle ``a -> b -> a``.
        NodeImportError
            a node function a worker could not import by its dotted path (a lambda, a
            closure, or ``__main__`` without a file).
        NodeDefinitionError
            an empty DAG, or one run parameter with two different types.
        """
        _ = self._validated

    @cached_property
    def _validated(self) -> tuple[nx.DiGraph, dict[str, NodeSpec], type[BaseModel]]:
        if not self._nodes:
            raise NodeDefinitionError(f"DAG {self.name!r} has no nodes; decorate a function")
        seen: set[str] = set()
        for n in self._nodes:
            if n.name in seen:
                raise DuplicateNodeError(n.name, self.name)
            seen.add(n.name)
        nodes = self.nodes
        graph: nx.DiGraph = nx.DiGraph(name=self.name)
        params: dict[str, list[tuple[str, inspect.Parameter]]] = {}
        for n in self._nodes:
            graph.add_node(n.name)
        for n in self._nodes:
            _check_importable(n)
            for pname, param in n.signature.parameters.items():
                if pname in nodes:
                    graph.add_edge(pname, n.name, data=True)
                else:
                    params.setdefault(pname, []).append((n.name, param))
            if n.map_over is not None:
                if n.map_over not in nodes:
                    raise UnknownNodeError(n.name, n.map_over, list(nodes))
                if n.map_over not in n.signature.parameters:
                    raise NodeDefinitionError(
                        f"@{self.name}.map({n.map_over!r}) on {n.name!r}: the function needs a "
                        f"parameter named {n.map_over!r} to receive one item"
                    )
            for ref in n.options.after:
                if ref not in nodes:
                    raise UnknownNodeError(n.name, ref, list(nodes))
                if not graph.has_edge(ref, n.name):
                    graph.add_edge(ref, n.name, data=False)
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            pass
        else:
            raise CycleError([u for u, _ in cycle] + [cycle[0][0]])
        for n in self._nodes:
            _check_rule(n, graph.in_degree(n.name))
        model = _params_model(self.name, params)
        specs: dict[str, NodeSpec] = {}
        for name in nx.lexicographical_topological_sort(graph):
            n = nodes[name]
            parents = tuple(sorted(graph.predecessors(name)))
            # a join: two or more upstream edges, or downstream of a map (waiting for all its
            # items); a map over a mapped node goes item by item, without a join
            is_join = len(parents) >= 2 or any(
                nodes[p].map_over is not None and p != n.map_over for p in parents
            )
            queue = n.options.queue or (
                keys.join_queue_name(self.name, name) if is_join else self.queue_name
            )
            specs[name] = NodeSpec(
                name=name,
                parents=parents,
                data_parents=tuple(p for p in parents if graph.edges[p, name]["data"]),
                children=tuple(sorted(graph.successors(name))),
                params=tuple(p for p in n.signature.parameters if p not in nodes),
                queue_name=queue,
                is_join=is_join,
                rule=n.options.rule,
                timeout=n.options.timeout,
                retry=n.options.retry,
                result_ttl=n.options.result_ttl or self.ttl_s,
                map_over=n.map_over,
                chunk=n.chunk,
            )
        return graph, specs, model

    @property
    def graph(self) -> nx.DiGraph:
        """The validated ``networkx.DiGraph``; edge attribute ``data`` is False for ``after=``."""
        return self._validated[0]

    @property
    def specs(self) -> dict[str, NodeSpec]:
        """:class:`NodeSpec` per node, in a deterministic topological order."""
        return self._validated[1]

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
        return self._validated[2]

    @cached_property
    def plan(self) -> Plan:
        """The validated :class:`~dagrq.plan.Plan`: what a run of this DAG is pinned to
        (computed once; every worker job compares its hash)."""
        return Plan(self.name, self.serializer, self.ttl_s, dict(self.specs))

    @property
    def plan_hash(self) -> str:
        """The plan's content hash: the DAG's version."""
        return self.plan.hash

    # --------------------------------------------------------------- pictures
    def to_dot(self, run: Any = None) -> str:
        """The DAG as Graphviz DOT text: joins with a double border, mapped nodes as stacks,
        ``after=`` edges dashed, run parameters as inputs. With ``run`` (a ``Run`` or a
        ``RunStatus``), nodes are filled by state. Deterministic (sorted) output.
        """
        from .dot import param_types, to_dot

        return to_dot(self.plan, param_types(self), _status_of(run))

    def to_mermaid(self, run: Any = None) -> str:
        """The DAG as a Mermaid flowchart, with the same facts as :meth:`to_dot`."""
        from .dot import param_types, to_mermaid

        return to_mermaid(self.plan, param_types(self), _status_of(run))

    # ------------------------------------------------------------ parameters
    def validate_params(
        self, params: Mapping[str, Any], *, from_strings: bool = False
    ) -> dict[str, Any]:
        """Validate and coerce run parameters; return them JSON-ready, defaults filled in.

        With ``from_strings`` (the CLI's ``-p key=value``), a value that does not validate
        as the string it is is tried as JSON, so ``-p ids=[1,2]`` gives a list.

        Raises
        ------
        ParameterError
            naming the parameter, the node(s) taking it and the expected type.
        """
        model = self.params_model
        fields = model.model_fields
        unknown = sorted(set(params) - set(fields))
        if unknown:
            known = ", ".join(sorted(fields)) or "none"
            raise ParameterError(
                f"parameter {unknown[0]!r} is not taken by any node of DAG {self.name!r} "
                f"(parameters: {known}); check its spelling"
            )
        values = dict(params)
        if from_strings:
            values = {k: _from_string(fields[k].annotation, v) for k, v in values.items()}
        try:
            return model.model_validate(values).model_dump(mode="json")
        except ValidationError as exc:
            err = exc.errors()[0]
            pname = str(err["loc"][0]) if err["loc"] else "?"
            field = fields.get(pname)
            expected = _type_name(field.annotation) if field else "?"
            takers = ", ".join(self._param_takers(pname))
            if err["type"] == "missing":
                raise ParameterError(
                    f"parameter {pname!r} (node {takers}) is required, of type {expected}; "
                    f"pass {pname}=... (CLI: -p {pname}=...)"
                ) from None
            raise ParameterError(
                f"parameter {pname!r} (node {takers}) expects {expected}, got "
                f"{err.get('input')!r}: {err['msg']}"
            ) from None

    def _param_takers(self, pname: str) -> list[str]:
        return [n.name for n in self._nodes if pname in n.signature.parameters]

    # ------------------------------------------------------------------ running
    def submit(self, connection: Any, **params: Any) -> Run:
        """Validate, then enqueue one run on ``connection`` (a ``redis.Redis``).

        Returns the :class:`~dagrq.client.Run`. A refused submit (invalid DAG or parameters)
        raises before any write, so it leaves nothing in Redis.
        """
        from .client import submit  # the graph model itself never imports redis

        return submit(self, connection, params)

    def run_local(self, **params: Any) -> dict[str, Any]:
        """Run the whole DAG in this process, in topological order, without Redis.

        Same validation, the same trigger rules and the same serialization round trip as a
        distributed run, so it is the oracle for tests. Returns ``{node: output}`` for the
        nodes that succeeded.

        Raises
        ------
        DAGError, ParameterError
            as :meth:`submit` does.
        RunFailed
            when a node failed; ``.failed`` maps node to error, ``.results`` holds the
            outputs of the nodes that succeeded.
        """
        self.validate()
        stored_params = self.validate_params(params)
        codec = self.codec
        nodes = self.nodes
        raw: dict[str, bytes] = {}
        outcome: dict[str, str] = {}
        failed: dict[str, str] = {}
        for name, spec in self.specs.items():
            counts = {"succeeded": 0, "failed": 0, "skipped": 0}
            for parent in spec.parents:
                counts[outcome[parent]] += 1
            if spec.parents and decide(spec.rule, total=len(spec.parents), **counts) != "fire":
                outcome[name] = "skipped"
                continue
            node = nodes[name]
            attempts = 1 + (spec.retry.max if spec.retry else 0)
            try:
                kwargs = build_kwargs(node, spec, raw, stored_params, codec)
            except Exception as exc:
                outcome[name], failed[name] = "failed", one_line_error(exc)
                continue
            if spec.map_over is None:
                blob, error = _attempt(node, kwargs, attempts, codec)
                if blob is not None:
                    raw[name], outcome[name] = blob, "succeeded"
                else:
                    outcome[name], failed[name] = "failed", error or "failed"
                continue
            source = spec.map_over
            try:
                items = iter_items(codec, raw.get(source), source)
            except TypeError as exc:
                outcome[name], failed[name] = "failed", one_line_error(exc)
                continue
            annotation = node.signature.parameters[source].annotation
            blobs: list[bytes | None] = []
            errors: list[str] = []
            for index, item in enumerate(items):
                kwargs[source] = codec.loads(codec.dumps(item), annotation)
                blob, error = _attempt(node, kwargs, attempts, codec)
                blobs.append(blob)
                if error is not None:
                    errors.append(f"item {index}: {error}")
            raw[name] = join_items(codec, blobs)  # children get the list, None where failed
            if errors:
                outcome[name] = "failed"
                failed[name] = f"{len(errors)} of {len(blobs)} items failed; first: {errors[0]}"
            else:
                outcome[name] = "succeeded"
        results = {
            name: codec.loads(raw[name], output_annotation(nodes[name]))
            for name in self.specs
            if outcome.get(name) == "succeeded"
        }
        if failed:
            problem = RunFailed("local", failed)
            problem.results = results  # type: ignore[attr-defined]
            raise problem
        return results


# ----------------------------------------------------------------- helpers
def _status_of(run: Any) -> Any:
    """A RunStatus from a Run (read now) or a RunStatus; None stays None."""
    if run is None or not hasattr(run, "status"):
        return run
    status = run.status
    return status() if callable(status) else run


def build_kwargs(
    node: Node[Any, Any],
    spec: NodeSpec,
    outputs: Mapping[str, bytes | None],
    params: Mapping[str, Any],
    codec: Any,
) -> dict[str, Any]:
    """The keyword arguments of one node call: parents' outputs and run parameters.

    A data parent with no stored output (it failed or was skipped and the rule still fired)
    gives ``None``. Run parameters are re-validated against the node's own annotations, so
    a ``date`` parameter arrives as a ``date`` after its JSON trip.
    """
    sig = node.signature.parameters
    kwargs: dict[str, Any] = {}
    for parent in spec.data_parents:
        if parent == spec.map_over:
            continue  # a mapped node gets one item there, set by the caller
        blob = outputs.get(parent)
        kwargs[parent] = None if blob is None else codec.loads(blob, sig[parent].annotation)
    for pname in spec.params:
        if pname in params:
            kwargs[pname] = _coerce(sig[pname].annotation, params[pname])
    return kwargs


def _attempt(
    node: Node[Any, Any], kwargs: dict[str, Any], attempts: int, codec: Any
) -> tuple[bytes | None, str | None]:
    """Call ``node`` up to ``attempts`` times; ``(serialized output, None)`` or
    ``(None, one-line error)``."""
    error = None
    for _ in range(attempts):
        try:
            return codec.dumps(node.fn(**kwargs)), None
        except Exception as exc:
            error = one_line_error(exc)
            traceback.clear_frames(exc.__traceback__)
    return None, error


def output_annotation(node: Node[Any, Any]) -> Any:
    """The type a node's stored output decodes to: its return annotation, or a list of it
    for a mapped node (``None``: untyped)."""
    ret = node.signature.return_annotation
    if ret is inspect.Signature.empty:
        return None
    return list[ret] if node.map_over is not None else ret  # type: ignore[valid-type]


def iter_items(codec: Any, blob: bytes | None, source: str) -> list[Any]:
    """The items a mapped node runs over: ``source``'s output as a list.

    Raises
    ------
    TypeError
        when that output is not iterable.
    """
    value = None if blob is None else codec.loads(blob, None)
    if isinstance(value, dict):
        return list(value)
    if value is None or isinstance(value, str | bytes) or not hasattr(value, "__iter__"):
        raise TypeError(
            f"the output of {source!r} is {type(value).__name__}, not a list to map over; "
            f"return a list (or any iterable) from {source!r}"
        )
    return list(value)


def join_items(codec: Any, blobs: list[bytes | None]) -> bytes:
    """One serialized list from serialized items (``None`` where an item has no result)."""
    if codec.name == "json":
        return b"[" + b",".join(b if b is not None else b"null" for b in blobs) + b"]"
    blob: bytes = codec.dumps([None if b is None else codec.loads(b, None) for b in blobs])
    return blob


def one_line_error(exc: BaseException) -> str:
    """``Type: message`` on one line.

    Examples:
        >>> one_line_error(ValueError("bad\\nthing"))
        'ValueError: bad thing'
    """
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _coerce(annotation: Any, value: Any) -> Any:
    if annotation is inspect.Parameter.empty or annotation is Any:
        return value
    from .codec import _adapter

    try:
        return _adapter(annotation).validate_python(value)
    except TypeError:
        return value


def _from_string(annotation: Any, value: Any) -> Any:
    if not isinstance(value, str) or annotation in (str, Any, None):
        return value
    from .codec import _adapter

    try:
        adapter = _adapter(annotation)
        try:
            return adapter.validate_python(value)
        except ValidationError:
            return adapter.validate_json(value)
    except (ValidationError, TypeError):
        return value  # let the model report the error with the original input


def _type_name(annotation: Any) -> str:
    if annotation is None or annotation is Any or annotation is inspect.Parameter.empty:
        return "any"
    if isinstance(annotation, type):
        return annotation.__name__
    return str(annotation).replace("typing.", "")


def _params_model(
    dag_name: str, params: Mapping[str, list[tuple[str, inspect.Parameter]]]
) -> type[BaseModel]:
    fields: dict[str, Any] = {}
    for pname, uses in sorted(params.items()):
        annotations = {
            u[1].annotation for u in uses if u[1].annotation is not inspect.Parameter.empty
        }
        if len(annotations) > 1:
            where = ", ".join(f"{node}: {_type_name(p.annotation)}" for node, p in uses)
            raise NodeDefinitionError(
                f"run parameter {pname!r} has different types ({where}); "
                "annotate it the same in every node"
            )
        annotation = annotations.pop() if annotations else Any
        defaults = [p.default for _, p in uses if p.default is not inspect.Parameter.empty]
        required = len(defaults) < len(uses)
        fields[pname] = (annotation, ... if required else defaults[0])
    model: type[BaseModel] = create_model(
        f"{dag_name}_params", __config__=ConfigDict(extra="forbid"), **fields
    )
    return model


def _check_rule(node: Node[Any, Any], parents: int) -> None:
    """A trigger rule its parents can satisfy: anything but the default needs parents, and a
    quorum no more than there are."""
    rule = node.options.rule
    if parents == 0 and rule != "all_success":
        raise NodeDefinitionError(
            f"node {node.name!r} has no upstream node, so trigger={rule!r} has nothing to wait "
            "for; remove trigger= or give it parents"
        )
    if rule.startswith("quorum:") and int(rule.split(":")[1]) > parents:
        raise NodeDefinitionError(
            f"node {node.name!r}: trigger=quorum({rule.split(':')[1]}) needs that many parents, "
            f"it has {parents}; lower the quorum or add parents"
        )


def _check_importable(node: Node[Any, Any]) -> None:
    fn = node.fn
    qualname = getattr(fn, "__qualname__", "")
    module_name = getattr(fn, "__module__", None)
    where = f"node {node.name!r} ({module_name}.{qualname})"
    if "<lambda>" in qualname or "<locals>" in qualname:
        raise NodeImportError(
            f"{where}: a lambda or a function defined inside another function cannot be "
            "imported by a worker; define it at the top level of a module"
        )
    module = sys.modules.get(module_name or "")
    if module is None:
        raise NodeImportError(
            f"{where}: module {module_name!r} is not importable; define the node in a module"
        )
    if module_name == "__main__" and not getattr(module, "__file__", None):
        raise NodeImportError(
            f"{where}: defined in an interactive __main__ that workers cannot import; "
            "move the DAG into a .py file and address it as file.py:dag"
        )
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
    if target is not fn and getattr(target, "fn", None) is not fn:
        raise NodeImportError(
            f"{where}: {module_name}.{qualname} does not resolve to this function, so a "
            "worker cannot import it; give the function a unique top-level name"
        )
