"""Cached outputs with real workers: examples/etl.py with cache=True run again does no node
work; a changed node re-runs with its descendants only; a changed parameter re-runs what is
downstream of it; --refresh re-runs a node and its descendants; a map re-runs only its new
items; a damaged entry is a miss; run_local sees the same keys."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import pytest
import redis

from dagrq import DAG, NodeDefinitionError, ParameterError, loader
from dagrq.model.cache import LocalCache, cache_key, code_version, refreshed
from dagrq.store import keys
from dagrq.store.cache import RedisCache, clear, listing

from .helpers import ROOT, Workers, dagrq, pipeline

#: examples/etl.py, cached, each body counting its runs in Redis
COUNTING = """

import functools as _functools
from rq import get_current_job as _current_job


def _counting(fn):
    @_functools.wraps(fn)
    def run(*args, **kwargs):
        _current_job().connection.incr(f"test:etl-ran:{fn.__name__}")
        return fn(*args, **kwargs)

    return run


for _node in dag._nodes:
    _node.fn = _counting(_node.fn)
"""
CHANGE = ("revenue_cents=o.quantity * price[o.sku]", "revenue_cents=2 * o.quantity * price[o.sku]")


def _etl(folder: Path, name: str, changed: bool = False) -> str:
    text = (ROOT / "examples" / "etl.py").read_text()
    text = text.replace('dag = DAG("etl")', 'dag = DAG("t_etl_cached", cache=True)')
    if changed:
        assert CHANGE[0] in text
        text = text.replace(*CHANGE)
    (folder / f"{name}.py").write_text(text + COUNTING)
    return f"{folder / name}.py:dag"


def _ran(conn: redis.Redis, dag: DAG) -> dict[str, int]:
    return {n: int(conn.get(f"test:etl-ran:{n}") or 0) for n in dag.specs}


def test_the_etl_example_cached_reruns_only_what_changed(
    conn: redis.Redis, workers: Workers, tmp_path: Path
) -> None:
    v1 = _etl(tmp_path, "etl_v1")
    dag = loader.load(v1)
    workers.start(v1, 1, "-c", "2")
    first = dag.submit(conn).wait(timeout=60)
    assert first.state == "succeeded" and set(_ran(conn, dag).values()) == {1}
    again = dag.submit(conn)
    status = again.wait(timeout=60)
    assert {s.state for s in status.nodes.values()} == {"cached"}
    assert set(_ran(conn, dag).values()) == {1}  # no node work the second time
    assert status.nodes["report"].cached_from == first.id
    from dagrq import Run

    assert again.result("report") == Run.fetch(first.id, conn, dag=dag).result("report")

    # a new version of one node, served by a fresh worker: that node and what is below it
    workers.stop()
    v2 = _etl(tmp_path, "etl_v2", changed=True)
    changed = loader.load(v2)
    workers.start(v2, 1, "-c", "2")
    before = _ran(conn, dag)
    status = changed.submit(conn).wait(timeout=60)
    below = {"enriched"} | nx.descendants(changed.graph, "enriched")
    ran = {n for n, c in _ran(conn, dag).items() if c > before[n]}
    assert ran == below, ran
    assert {n for n, s in status.nodes.items() if s.state == "cached"} == set(dag.specs) - below

    # a run parameter one root takes: what is downstream of it
    before = _ran(conn, dag)
    changed.submit(conn, rows=600).wait(timeout=60)
    ran = {n for n, c in _ran(conn, dag).items() if c > before[n]}
    assert ran == {"orders_csv"} | nx.descendants(changed.graph, "orders_csv"), ran

    # --refresh NODE: it and its descendants, whatever the cache holds
    before = _ran(conn, dag)
    out = dagrq("submit", v2, "--refresh", "customer_ltv", env={"DAGRQ_URL": _url(conn)})
    assert out.returncode == 0, out.stderr
    Run.fetch(out.stdout.strip(), conn).wait(timeout=60)
    ran = {n for n, c in _ran(conn, dag).items() if c > before[n]}
    assert ran == {"customer_ltv", "report"}, ran


def test_a_map_reruns_only_its_new_items(conn: redis.Redis, workers: Workers) -> None:
    address = pipeline("cached")
    dag = loader.load(address)
    workers.start(address, 1, "-c", "2")
    assert dag.submit(conn, n=1000).wait(timeout=120).state == "succeeded"
    assert int(conn.get("test:ran:square") or 0) == 1000
    run = dag.submit(conn, n=1010)
    assert run.wait(timeout=120).state == "succeeded"
    assert int(conn.get("test:ran:square") or 0) == 1010  # 10 new items ran
    assert run.result("total") == sum(i * i for i in range(1010))


def test_a_damaged_entry_is_a_miss_and_entries_are_listed_and_cleared(
    conn: redis.Redis, workers: Workers, redis_url: str
) -> None:
    address = pipeline("cached")
    dag = loader.load(address)
    workers.start(address, 1, "-c", "2")
    dag.submit(conn, n=3).wait(timeout=60)
    for key in conn.scan_iter(keys.cache_index_key("t_cached") + ":total:*"):
        conn.hset(key, "o", b"not json {")
    status = dag.submit(conn, n=3).wait(timeout=60)
    assert status.nodes["total"].state == "succeeded"  # ran again, no crash
    assert status.nodes["numbers"].state == "cached"
    assert int(conn.get("test:ran:total") or 0) == 2
    shown = dagrq("cache", "ls", "t_cached", "--json", env={"DAGRQ_URL": redis_url})
    listed = {e["node"]: e for e in json.loads(shown.stdout)}
    assert listed["square"]["entries"] == 3 and listed["total"]["entries"] >= 1
    out = dagrq("cache", "clear", "t_cached", "square", env={"DAGRQ_URL": redis_url})
    assert out.returncode == 0 and "3" in out.stdout
    assert {e.node for e in listing(conn, ["t_cached"])} == {"numbers", "total"}
    out = dagrq("cache", "clear", env={"DAGRQ_URL": redis_url})  # every DAG's
    assert out.returncode == 0 and listing(conn) == [] and clear(conn, "t_cached") == 0


def test_entries_are_bounded_per_dag(conn: redis.Redis) -> None:
    from dagrq.model.cache import Entry

    cache = RedisCache(conn, "t_bounded", max_entries=5)
    for i in range(8):
        cache.put("n", f"k{i}", Entry(b"1", "r", float(i)), 60)
    assert conn.zcard(keys.cache_index_key("t_bounded")) == 5
    assert cache.get("n", "k0") is None and cache.get("n", "k7") is not None


CALLS: list[str] = []


def double(x: int) -> int:
    CALLS.append("double")
    return 2 * x


def plus(double: int) -> int:
    CALLS.append("plus")
    return double + 1


def test_run_local_keeps_and_hits_by_the_same_keys(conn: redis.Redis) -> None:
    dag = DAG("t_local_cache", cache=True)
    dag.node(double)
    dag.node(plus)
    local = LocalCache()
    CALLS.clear()
    assert dag.run_local(cache_store=local, x=2) == {"double": 4, "plus": 5}
    assert dag.run_local(cache_store=local, x=2) == {"double": 4, "plus": 5}
    assert CALLS == ["double", "plus"]  # the second run was all hits
    dag.run_local(cache_store=local, refresh=["plus"], x=2)
    dag.run_local(cache_store=local, x=3)
    assert CALLS == ["double", "plus", "plus", "double", "plus"]
    shared = RedisCache(conn, dag.name)  # the workers' entries, read and written in-process
    dag.run_local(cache_store=shared, x=7)
    dag.run_local(cache_store=RedisCache(conn, dag.name), x=7)
    assert CALLS[-2:] == ["double", "plus"]
    assert conn.zcard(keys.cache_index_key("t_local_cache")) == 2


def test_keys_name_the_code_and_the_inputs() -> None:
    def f(x: int) -> int:
        return x

    assert code_version(f, None).startswith("src:") and code_version(f, "2") == "2"
    a = cache_key("json", "f", "v1", [b"p:x=1"])
    assert (
        a != cache_key("json", "f", "v1", [b"p:x=2"]) != cache_key("pickle", "f", "v1", [b"p:x=1"])
    )


def test_a_branch_cannot_be_cached_and_refresh_names_nodes(conn: redis.Redis) -> None:
    dag = loader.load(pipeline("cached"))
    with pytest.raises(ParameterError, match="no node 'nope'"):
        dag.submit(conn, refresh=["nope"])
    assert refreshed(dag.name, dag.graph, ["square"]) == "square,total"
    bad = DAG("t_branchy")
    bad.branch(cache=True)(pick)
    bad.node(picked)
    with pytest.raises(NodeDefinitionError, match="a branch cannot be cached"):
        bad.validate()


def pick() -> str:
    return "picked"


def picked(pick: str) -> int:
    return 1


def _url(conn: redis.Redis) -> str:
    kw = conn.connection_pool.connection_kwargs
    return f"unix://{kw['path']}" if "path" in kw else f"redis://{kw['host']}:{kw['port']}"
