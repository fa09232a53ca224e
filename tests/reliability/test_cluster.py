"""Runs sharded over a real Redis Cluster (Debian's redis-server: 3 primaries, 3 replicas on
loopback), served by two worker pools: every run ends with the right result, runs land on
every primary, each join fires once, and the CLI and the web view reach a run on each
primary (docs/scale.md)."""

from __future__ import annotations

import json
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dagrq import DAG, Run, loader, on_event
from dagrq.cli import main
from dagrq.cluster import for_run, new_run_id, shard_of, shard_tags, sibling, slot_of_tag
from dagrq.connection import connect
from dagrq.store import objects, waits
from dagrq.store.keys import cache_entry_key
from dagrq.store.runkeys import run_key
from dagrq.workers.serving import ReconcileThread
from dagrq.workers.triggers import start_runs

from ..helpers import join_fires, pipeline, ui_on, wait_for
from .servers import ClusterSet, Fleet
from .storm import PIPELINE as STORM

SHARDS = 6
WAITING = [pipeline("waiting", dag) for dag in ("orders", "audit", "reports", "fleet", "region")]
WAITING.append(pipeline("waiting", "approval"))


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[ClusterSet]:
    made = ClusterSet(tmp_path / "cluster")
    try:
        yield made
    finally:
        made.stop()


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    """The ``dagrq`` command run in this process (its own code, without an interpreter's
    start-up per call), as a finished process."""
    done = CliRunner().invoke(main, list(args))
    return subprocess.CompletedProcess(list(args), done.exit_code, done.stdout, done.stderr)


def _primary_of(cluster: ClusterSet, run_id: str) -> int:
    return cluster.owner(slot_of_tag(shard_tags(SHARDS)[shard_of(run_id, SHARDS)]))


def _ended(runs: list[Run]) -> bool:
    return all(r.status().state != "running" for r in runs)


def test_runs_spread_over_every_primary_end_right_and_each_join_fires_once(
    cluster: ClusterSet, tmp_path: Path
) -> None:
    url = cluster.url(SHARDS)
    conn = connect(url)
    dag = loader.load(STORM)
    fleet = Fleet(url, tmp_path / "logs")
    try:
        fleet.start(STORM, 2, *WAITING)  # two pools, each with a process per shard
        runs = [dag.submit(conn, seed=i) for i in range(300)]
        wait_for(lambda: _ended(runs), 300, "every run ended")
        by_primary: dict[int, list[Run]] = {}
        for run in runs:
            final = run.status()
            assert final.state == "succeeded", (run.id, final.failed())
            assert run.results() == dag.run_local(**final.params)
            assert join_fires(run, ("j1", "j2", "total")) == {"j1": 1, "j2": 1, "total": 1}
            by_primary.setdefault(_primary_of(cluster, run.id), []).append(run)
        assert set(by_primary) == cluster.primaries()
        print({port: len(r) for port, r in by_primary.items()})
        one_each = [found[0] for found in by_primary.values()]
        _reads_each(url, one_each, tmp_path)
        _events_subdags_and_signals(url)
    finally:
        fleet.procs.stop()
    _cancels_and_retries_each(cluster, url, tmp_path)


def _reads_each(url: str, runs: list[Run], tmp_path: Path) -> None:
    """``dagrq runs``, ``status``, ``result``, ``logs``, ``why`` and the web view on a run of
    each primary."""
    listed = _cli("runs", "--url", url, "--json", "--limit", "400")
    assert listed.returncode == 0, listed.stderr
    ids = {r["id"] for r in json.loads(listed.stdout)}
    with ui_on(url, tmp_path / "ui.log") as base:
        for run in runs:
            assert run.id in ids
            status = _cli("status", run.id, "--url", url, "--json")
            assert status.returncode == 0 and json.loads(status.stdout)["state"] == "succeeded"
            result = _cli("result", run.id, "total", "--url", url, "--json")
            assert result.returncode == 0 and json.loads(result.stdout) == run.result("total")
            for command in (("logs", run.id), ("why", run.id, "total")):
                shown = _cli(*command, "--url", url)
                assert shown.returncode == 0, shown.stderr
            page = urllib.request.urlopen(f"{base}/runs/{run.id}", timeout=10).read().decode()
            assert run.id in page and "succeeded" in page
            api = json.loads(urllib.request.urlopen(f"{base}/api/runs/{run.id}").read())
            assert api["state"] == "succeeded"
        newest = [r["id"] for r in json.loads(listed.stdout)][:25]  # of every shard
        grid = urllib.request.urlopen(f"{base}/dags/t_storm", timeout=10).read().decode()
        assert all(run_id in grid for run_id in newest)
        assert "t_storm" in urllib.request.urlopen(f"{base}/", timeout=10).read().decode()
        scraped = urllib.request.urlopen(f"{base}/metrics", timeout=10).read().decode()
        assert 'dagrq_runs_total{dag="t_storm",state="succeeded"} 300.0' in scraped  # summed
        served = _cli("workers", "--url", url, "--json")
        assert served.returncode == 0, served.stderr
        (version,) = [v for v in json.loads(served.stdout) if v["dag"] == "t_storm"]
        assert len(version["workers"]) == 2 * SHARDS  # two pools, a process per shard each
        for run in runs:  # the runs page searches every shard by id prefix
            found = urllib.request.urlopen(f"{base}/runs?q={run.id[:10]}", timeout=10).read()
            assert run.id in found.decode()


def _events_subdags_and_signals(url: str) -> None:
    """An event emitted by hand starts its subscribers (on the first shard), the event a run
    emits starts its own subscriber (on that run's shard), a sub-DAG's children run on their
    parent's shard, and a waiting node takes a signal."""
    conn = connect(url)
    emitted = _cli("emit", "orders.uploaded", "--data", '{"day": "2026-12-01"}', "--url", url)
    assert emitted.returncode == 0, emitted.stderr
    fleet = loader.load(pipeline("waiting", "fleet")).submit(conn, n=6)
    approval = loader.load(pipeline("waiting", "approval")).submit(conn)
    wait_for(lambda: approval.status().nodes["approve"].state == "waiting", 60, "waiting")
    approval.signal("approve", {"approved": True, "by": "ops"})
    assert approval.wait(60).state == "succeeded"
    assert fleet.wait(60).state == "succeeded" and fleet.result("total") == 6 * 2 * 3

    def started(dag: str) -> list[str]:
        return [r.state for r in Run.list(conn, dag=dag)]

    for dag in ("t_wait_orders", "t_wait_audit", "t_wait_reports"):
        wait_for(lambda d=dag: started(d) == ["succeeded"], 60, f"a run of {dag}")


def _cancels_and_retries_each(cluster: ClusterSet, url: str, tmp_path: Path) -> None:
    """With no worker up, a run on each primary is canceled, then retried and finished."""
    conn = connect(url)
    dag = loader.load(STORM)
    waiting: dict[int, Run] = {}
    while len(waiting) < len(cluster.primaries()):
        run = dag.submit(conn, seed=len(waiting) + 1000)
        waiting.setdefault(_primary_of(cluster, run.id), run)
    for run in waiting.values():
        canceled = _cli("cancel", run.id, "--url", url)
        assert canceled.returncode == 0, canceled.stderr
        assert run.status().state == "canceled"
        again = _cli("retry", run.id, "--url", url)
        assert again.returncode == 0, again.stderr
    fleet = Fleet(url, tmp_path / "logs-again")
    try:
        fleet.start(STORM, 1)
        wait_for(lambda: _ended(list(waiting.values())), 120, "the retried runs ended")
        for run in waiting.values():
            assert run.status().state == "succeeded"
            assert run.results() == dag.run_local(**run.status().params)
    finally:
        fleet.procs.stop()


def test_a_primary_killed_mid_run_every_run_ends_and_each_join_fires_once(
    cluster: ClusterSet, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cluster promotes the dead primary's replica; the workers of its shards follow it
    (``MOVED``, a lost connection: the shard's slot is asked for again) and, with
    ``DAGRQ_WAIT_REPLICAS=1``, no acknowledged step was lost with it."""
    monkeypatch.setenv("DAGRQ_WAIT_REPLICAS", "1")
    monkeypatch.setenv("DAGRQ_WAIT_MS", "200")  # the promoted primary has no replica yet
    url = cluster.url(SHARDS)
    conn = connect(url)
    dag = loader.load(STORM)
    fleet = Fleet(url, tmp_path / "logs")
    fleet.procs.env.update(DAGRQ_WAIT_REPLICAS="1", DAGRQ_WAIT_MS="200")
    try:
        fleet.start(STORM, 2, "--lease", "5")
        runs = [dag.submit(conn, seed=i) for i in range(60)]
        wait_for(lambda: sum(r.status().state == "succeeded" for r in runs) > 10, 60, "mid-run")
        victim = _primary_of(cluster, runs[-1].id)  # it holds runs in flight
        cluster.servers[victim].kill()
        killed = time.monotonic()
        wait_for(lambda: victim not in cluster.primaries(), 30, "a replica promoted")
        promoted = time.monotonic()
        cluster.servers[victim].start()  # the machine is back: a replica of its successor
        runs += [dag.submit(conn, seed=100 + i) for i in range(10)]
        wait_for(lambda: _ended(runs), 180, "every run ended")
        print(
            f"promoted {promoted - killed:.1f} s after the kill; every run ended "
            f"{time.monotonic() - promoted:.1f} s after the promotion"
        )
        for run in runs:
            final = run.status()
            assert final.state == "succeeded", (run.id, final.failed())
            assert run.results() == dag.run_local(**final.params)
            assert join_fires(run, ("j1", "j2", "total")) == {"j1": 1, "j2": 1, "total": 1}
        assert len(cluster.primaries()) == 3
    finally:
        fleet.procs.stop()


def test_the_object_sweep_finds_each_run_on_its_own_shard_and_entries_on_any(
    cluster: ClusterSet, tmp_path: Path
) -> None:
    """Only the first shard's reconciler sweeps a store, for every shard: it deletes the
    objects of a run and of a cache entry gone from every shard, and keeps those of live runs
    on other shards and of an entry another shard keeps."""
    first = sibling(connect(cluster.url(SHARDS)), 0)
    dag = DAG("sweep", output_store=f"file://{tmp_path / 'objects'}", offload_over=10)
    store = dag.output_store
    assert store is not None
    reconcilers = [ReconcileThread(sibling(first, s), [dag], 60) for s in range(SHARDS)]
    assert [r.sweeps for r in reconcilers] == [True] + [False] * (SHARDS - 1)

    alive = [new_run_id(sibling(first, shard)) for shard in (1, 4)]
    gone = new_run_id(sibling(first, 2))
    for run_id in [*alive, gone]:
        store.offload(b"x" * 100, run_id, "big")
    for run_id in alive:
        for_run(first, run_id).hset(run_key(run_id), "dag", "sweep")
    for key in ("kept-on-5", "evicted"):
        store.cached(b"y" * 100, "sweep", "big", key)
    sibling(first, 5).set(cache_entry_key("sweep", "big", "kept-on-5"), "{}")

    assert objects.sweep(first, [store]) == 2
    assert sorted(p.name for p in (tmp_path / "objects").iterdir()) == sorted([*alive, "_cache"])
    entries = tmp_path / "objects" / "_cache" / "sweep" / "big"
    assert [p.name for p in entries.iterdir()] == ["kept-on-5"]


def _one() -> int:
    return 1


def test_a_limited_dags_event_runs_start_on_the_first_shard_once_per_event(
    cluster: ClusterSet,
) -> None:
    """A DAG under a shared limit gets the runs its events start on the first shard (where
    its limit is counted), once per event even when another shard's stream held it (stream
    ids repeat across shards); a DAG without one starts them on the stream's own shard."""
    first = sibling(connect(cluster.url(SHARDS)), 0)
    limited = DAG("limited", triggers=[on_event("go")], max_active_runs=5)
    free = DAG("free", triggers=[on_event("go")])
    for dag in (limited, free):
        dag.node(_one)
    event = waits.Emitted("1700000000000-0", "go", None, None)
    third = sibling(first, 3)

    from_third = start_runs(third, limited, event) + start_runs(third, limited, event)
    from_first = start_runs(first, limited, event) + start_runs(first, limited, event)
    assert len(from_third) == 1 and len(from_first) == 1 and from_third != from_first
    assert [shard_of(r, SHARDS) for r in from_third + from_first] == [0, 0]
    assert all(first.exists(run_key(r)) for r in from_third + from_first)
    [own] = start_runs(third, free, event)
    assert shard_of(own, SHARDS) == 3 and third.exists(run_key(own))
