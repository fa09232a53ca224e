"""The graph model, in-process: edges, joins, validation errors, parameters, run_local."""

from __future__ import annotations

import types
from datetime import date

import pytest

import dagrq
from dagrq import (
    DAG,
    CycleError,
    DAGError,
    DuplicateNodeError,
    NodeDefinitionError,
    NodeImportError,
    ParameterError,
    RunFailed,
    UnknownNodeError,
    loader,
)

from .helpers import pipeline

# Node functions must be importable by a worker, so test DAGs live at module level (or in a
# pipeline file of their own, as the orders DAG that the pictures tests draw too).
orders = loader.load(pipeline("orders"))
Total = orders.nodes["totals"].signature.return_annotation


def test_edges_come_from_parameter_names_in_any_decoration_order() -> None:
    g = orders.graph
    assert set(g.edges) == {
        ("fetch", "totals"),
        ("fetch", "fraud"),
        ("totals", "report"),
        ("fraud", "report"),
        ("report", "notify"),
    }
    assert g.edges["report", "notify"]["data"] is False
    assert g.edges["fetch", "totals"]["data"] is True


def test_joins_roots_sinks_and_queues() -> None:
    assert orders.joins == ["report"]
    assert orders.roots == ["fetch"]
    assert orders.sinks == ["notify"]
    assert orders.queues == ["dagrq.orders", "dagrq.orders.report"]
    assert orders.specs["report"].queue_name == "dagrq.orders.report"


def test_node_functions_stay_plain_callables() -> None:
    fetch, fraud = orders.nodes["fetch"], orders.nodes["fraud"]
    assert fetch(date(2026, 1, 1), limit=2) == [{"id": 0}, {"id": 1}]
    assert isinstance(fraud, dagrq.Node)
    assert fraud.options.retry == dagrq.Retry(max=3)
    assert fraud.options.timeout == 30


def test_run_local_round_trips_through_json_and_keeps_types() -> None:
    out = orders.run_local(day="2026-11-27", limit=4)
    assert out["totals"] == Total(count=4, day=date(2026, 11, 27))
    assert out["fraud"] == ["1", "3"]
    assert out["report"] == "4 orders on 2026-11-27, 2 flagged"
    assert out["notify"] == "sent"


def test_parameters_are_validated_with_names_nodes_and_types() -> None:
    with pytest.raises(
        ParameterError, match=r"'day' \(node fetch, totals\) is required, of type date"
    ):
        orders.validate_params({})
    with pytest.raises(ParameterError, match=r"'limit' \(node fetch\) expects int, got 'many'"):
        orders.validate_params({"day": "2026-11-27", "limit": "many"}, from_strings=True)
    with pytest.raises(ParameterError, match=r"'dya' is not taken by any node"):
        orders.validate_params({"dya": "x"})
    assert orders.validate_params({"day": "2026-11-27", "limit": "5"}, from_strings=True) == {
        "day": "2026-11-27",
        "limit": 5,
    }


lists = DAG("lists")


@lists.node
def takes_ids(ids: list[int], when: date) -> int:
    return sum(ids) + when.day


def test_cli_strings_fall_back_to_json_for_structured_types() -> None:
    values = lists.validate_params({"ids": "[1, 2]", "when": "2026-01-02"}, from_strings=True)
    assert values == {"ids": [1, 2], "when": "2026-01-02"}
    assert lists.run_local(**values) == {"takes_ids": 5}


def test_cycle_is_refused_and_spelled() -> None:
    cyc = DAG("cyc")
    for name, parent in (("a", "c"), ("b", "a"), ("c", "b")):
        cyc.node(name=name)(_module_fn(parent))
    with pytest.raises(CycleError) as info:
        cyc.validate()
    text = str(info.value)
    assert text.startswith("cycle: ")
    ring = info.value.cycle
    assert ring[0] == ring[-1] and sorted(ring[:-1]) == ["a", "b", "c"]
    assert " -> ".join(ring) in text


def test_unknown_after_and_duplicates_are_refused() -> None:
    d = DAG("refs")
    d.node(name="a", after=["nope"])(_module_fn(None))
    with pytest.raises(UnknownNodeError, match="'nope' names no node"):
        d.validate()
    dup = DAG("dup")
    dup.node(name="a")(_module_fn(None))
    dup.node(name="a")(_module_fn(None, "other_a"))
    with pytest.raises(DuplicateNodeError, match="'a' is defined twice"):
        dup.validate()


def test_lambdas_and_closures_are_refused() -> None:
    d = DAG("lam")
    d.node(name="f")(lambda: 1)
    with pytest.raises(NodeImportError, match="lambda"):
        d.validate()


def test_interactive_main_is_refused() -> None:
    main = types.ModuleType("__main__")  # like `python -c` or a REPL: no __file__
    src = "def f():\n    return 1\n"
    exec(compile(src, "<stdin>", "exec"), main.__dict__)
    d = DAG("repl")
    d.node(main.__dict__["f"])
    import sys

    saved = sys.modules["__main__"]
    sys.modules["__main__"] = main
    try:
        with pytest.raises(NodeImportError, match="interactive __main__"):
            d.validate()
    finally:
        sys.modules["__main__"] = saved


def test_unknown_option_is_an_error_at_decoration() -> None:
    d = DAG("opts")
    fn = _module_fn(None, "takes_int")
    with pytest.raises(NodeDefinitionError, match="on 'takes_int': option 'retires' is unknown"):
        d.node(retires=3)(fn)  # named when the function comes
    with pytest.raises(NodeDefinitionError, match="did you mean 'retry'"):
        d.node(retires=3)(fn)
    with pytest.raises(NodeDefinitionError, match=r"option 'timeout' .* whole seconds"):
        d.node(fn, timeout=-1)
    with pytest.raises(NodeDefinitionError, match="did you mean 'all_success'"):
        d.node(trigger="all_sucess")(fn)


def test_conflicting_parameter_types_are_refused() -> None:
    d = DAG("conflict")
    d.node(name="a")(_module_fn(None, "takes_int"))
    d.node(name="b")(_module_fn(None, "takes_str"))
    with pytest.raises(NodeDefinitionError, match="different types"):
        d.validate()


def test_bad_dag_names_are_refused() -> None:
    with pytest.raises(DAGError):
        DAG("has space")
    with pytest.raises(DAGError):
        DAG("ok", serializer="yaml")  # type: ignore[arg-type]


failing = DAG("local_failing")


@failing.node
def one() -> int:
    return 1


@failing.node
def breaks(one: int) -> int:
    raise RuntimeError("no")


@failing.node
def downstream(breaks: int) -> int:
    return breaks


@failing.node
def sibling(one: int) -> int:
    return one + 1


def test_run_local_failure_skips_downstream_and_keeps_other_results() -> None:
    with pytest.raises(RunFailed) as info:
        failing.run_local()
    assert info.value.failed == {"breaks": "RuntimeError: no"}
    assert info.value.results == {"one": 1, "sibling": 2}  # type: ignore[attr-defined]


# ---------------------------------------------------------------- helpers
def _module_fn(parent: str | None, kind: str = "plain") -> object:
    """Importable module-level functions with the wanted parameter names."""
    return _FNS[(parent, kind)]


def plain_none() -> int:
    return 0


def other_a() -> int:
    return 0


def takes_int(n: int) -> int:
    return n


def takes_str(n: str) -> str:
    return n


def from_a(a: int) -> int:
    return a


def from_b(b: int) -> int:
    return b


def from_c(c: int) -> int:
    return c


_FNS = {
    (None, "plain"): plain_none,
    (None, "other_a"): other_a,
    (None, "takes_int"): takes_int,
    (None, "takes_str"): takes_str,
    ("a", "plain"): from_a,
    ("b", "plain"): from_b,
    ("c", "plain"): from_c,
}
