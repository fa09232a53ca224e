"""Big outputs out of Redis (``DAG(output_store=, offload_over=)``): real workers write them to
a ``file://`` folder and to an S3 server (moto's server mode, started here), Redis keeps
references, readers fetch the objects, and purge, expiry and a deleted object behave."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from dagrq import DAG, DAGError, OutputMissing, RunFailed, RunNotFound, loader
from dagrq.model.objects import OutputStore, Ref, is_ref, parse_size, ref_of, resolve
from dagrq.store import keys, objects, runkeys

from .helpers import Workers, dagrq, free_port, pipeline, wait_for

ADDRESS = pipeline("offload")


def _load(monkeypatch: pytest.MonkeyPatch, workers: Workers, store: str, mb: float) -> DAG:
    """The offload pipeline with its store at ``store`` and ``big`` of ``mb`` MB, for this
    process and the workers alike (both must build the same plan)."""
    env = {"DAGRQ_TEST_STORE": store, "DAGRQ_TEST_MB": str(mb)}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    workers.procs.env.update(env)
    sys.modules.pop("offload", None)  # loaded again with this store
    return loader.load(ADDRESS)


def _flows(conn: redis.Redis, dag: DAG, mb: float) -> Any:
    """Submit one run, check that it succeeded with the right values while Redis grew by
    less than 1 MB; return the run."""
    before = int(conn.info("memory")["used_memory"])
    run = dag.submit(conn)
    final = run.wait(timeout=240)
    assert final.state == "succeeded", final.nodes
    grew = int(conn.info("memory")["used_memory"]) - before
    print(f"{mb} MB through the object store: Redis grew by {grew} bytes")
    assert grew < 10**6
    size = int(mb * 10**6)
    assert run.result("joined") == {"length": size, "small": 7}
    assert run.result("total") == {"doubled": 2 * 3 * 1_200_000, "big": size}
    stored = run.stored("big")
    assert is_ref(stored) and ref_of(stored).size == size + 2  # the JSON string's quotes
    assert run.stored("small") == b"7"  # under the threshold: kept in Redis
    assert conn.get(runkeys.output_key(run.id, "big")) == stored  # Redis holds the reference
    return run


def test_sizes_references_and_the_threshold(tmp_path: Path) -> None:
    assert parse_size("1MB") == 10**6 and parse_size("2 MiB") == 2 * 2**20
    assert parse_size("1.5kb") == 1500 and parse_size(7) == 7
    with pytest.raises(ValueError, match="'3 parsecs' is not a size"):
        parse_size("3 parsecs")
    store = OutputStore(f"file://{tmp_path}/s", 10)
    assert store.offload(b'"short"', "r1", "n") == b'"short"'
    blob = store.offload(b'"' + b"x" * 20 + b'"', "r1", "n")
    ref = ref_of(blob)
    assert is_ref(blob) and (ref.run, ref.node, ref.size) == ("r1", "n", 22)
    assert ref.url.startswith(f"file://{tmp_path}/s/r1/n/")
    assert resolve(blob) == b'"' + b"x" * 20 + b'"'
    assert store.offload(blob, "r1", "n") == blob  # a reference stays one
    gone = Ref(f"file://{tmp_path}/s/r1/n/none", "r1", "n", 5).to_bytes()
    with pytest.raises(OutputMissing) as err:
        resolve(gone)
    assert str(err.value) == (
        f"output of node 'n' in run 'r1' is gone from the object store: "
        f"file://{tmp_path}/s/r1/n/none (no such object); objects are deleted when their run "
        "expires or is purged"
    )
    for bad, says in [
        (dict(output_store="nope"), "output_store 'nope' is not a URL"),
        (dict(output_store="file:///x", offload_over="big"), "offload_over: size 'big'"),
        (dict(output_store="gcs://b/p"), "output_store 'gcs://b/p' cannot be opened"),
        (dict(max_output_bytes=2**30), "over the 512 MiB Redis takes as one value; keep big"),
    ]:
        with pytest.raises(DAGError, match=says):
            DAG("t_bad_store", **bad)  # type: ignore[arg-type]


def test_a_700_mb_output_flows_to_its_join_through_a_file_store_and_purge_deletes_it(
    conn: redis.Redis, workers: Workers, redis_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    root = tmp_path / "objects"
    dag = _load(monkeypatch, workers, f"file://{root}", 700)  # over Redis's 512 MB for a value
    workers.start(ADDRESS, 2)
    run = _flows(conn, dag, 700)
    folders = {p.name: len(list(p.iterdir())) for p in (root / run.id).iterdir()}
    assert folders == {"big": 1, "chunks": 1, "doubled": 6}  # 3 items, 3 item results
    shown = dagrq("result", run.id, "joined", "--json", "--url", redis_url)
    assert json.loads(shown.stdout) == {"length": 700_000_000, "small": 7}, shown.stderr
    assert run.purge() > 0
    assert not (root / run.id).exists()
    assert conn.keys(f"{runkeys.run_key(run.id)}*") == []
    assert conn.keys(f"{keys.RQ_JOB_PREFIX}{keys.job_id(run.id, '')}*") == []
    with pytest.raises(RunNotFound):
        run.status()


def test_a_deleted_object_is_a_clear_error_for_readers_and_for_a_node_reading_it(
    conn: redis.Redis, workers: Workers, redis_url: str, tmp_path: Path, monkeypatch: Any
) -> None:
    root = tmp_path / "objects"
    dag = _load(monkeypatch, workers, f"file://{root}", 2)
    workers.start(ADDRESS, 1)
    run = _flows(conn, dag, 2)
    url = ref_of(run.stored("big") or b"").url
    Path(url.removeprefix("file://")).unlink()
    says = f"output of node 'big' in run '{run.id}' is gone from the object store: {url}"
    with pytest.raises(OutputMissing, match=says):
        run.result("big")
    shown = dagrq("result", run.id, "big", "--url", redis_url)
    assert shown.returncode == 1 and "Traceback" not in shown.stderr
    assert shown.stderr.strip().splitlines() == [
        f"error: {says} (no such object); objects are deleted when their run expires or is purged"
    ]
    run.clear("joined")  # joined runs again and reads big's object: it fails, naming it
    with pytest.raises(RunFailed):
        run.wait(timeout=60)
    final = run.status()
    assert says in (final.nodes["joined"].error or "")


def test_the_workers_sweep_deletes_the_objects_of_expired_runs_and_entries(
    conn: redis.Redis, workers: Workers, tmp_path: Path, monkeypatch: Any
) -> None:
    root = tmp_path / "objects"
    dag = _load(monkeypatch, workers, f"file://{root}", 2)
    store = dag.output_store
    assert store is not None
    kept = store.cached(b'"' + b"y" * 2_000_000 + b'"', "t_offload", "big", "k1")
    assert is_ref(kept) and (root / "_cache" / "t_offload" / "big" / "k1").exists()
    conn.hset(keys.cache_entry_key("t_offload", "big", "k1"), "o", kept)
    store.cached(b'"' + b"z" * 2_000_000 + b'"', "t_offload", "big", "k2")  # entry gone
    assert objects.sweep(conn, [store]) == 1  # k2's object: its entry is not in Redis
    workers.start(ADDRESS, 1, "--lease", "5")
    run = _flows(conn, dag, 2)
    other = _flows(conn, dag, 2)
    conn.delete(*conn.keys(f"{runkeys.run_key(run.id)}*"))  # as its TTL would
    wait_for(lambda: not (root / run.id).exists(), 30, "the expired run's objects swept")
    assert (root / other.id).exists() and (root / "_cache" / "t_offload" / "big" / "k1").exists()
    assert not (root / "_cache" / "t_offload" / "big" / "k2").exists()


@pytest.fixture
def s3_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """moto's S3 server on a free loopback port, with a bucket; the fsspec settings to reach
    it (for this process and, as environment, for workers)."""
    pytest.importorskip("s3fs", reason="s3fs is a test dependency: pip install -e '.[test]'")
    import fsspec.config

    port = free_port()
    log = (tmp_path / "moto.log").open("wb")
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "test", "secret": "test"}
    monkeypatch.setitem(fsspec.config.conf, "s3", options)
    env = {"FSSPEC_S3": json.dumps(options), "AWS_DEFAULT_REGION": "us-east-1"}
    try:
        fs = fsspec.filesystem("s3", skip_instance_cache=True)
        wait_for(lambda: _made_bucket(fs), 30, "moto's S3 server up")
        yield env
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def _made_bucket(fs: Any) -> bool:
    try:
        fs.mkdir("dagrq-test")
    except OSError:
        return False
    return True


def test_a_200_mb_output_flows_through_an_s3_store(
    conn: redis.Redis,
    workers: Workers,
    s3_server: dict[str, str],
    monkeypatch: Any,
) -> None:
    import fsspec

    workers.procs.env.update(s3_server)
    dag = _load(monkeypatch, workers, "s3://dagrq-test/objects", 200)
    workers.start(ADDRESS, 2)
    run = _flows(conn, dag, 200)
    fs = fsspec.filesystem("s3", skip_instance_cache=True)
    found = fs.find(f"dagrq-test/objects/{run.id}")
    assert sorted({p.split("/")[3] for p in found}) == ["big", "chunks", "doubled"]
    assert len(found) == 8
    url = ref_of(run.stored("big") or b"").url
    fs.rm(url.removeprefix("s3://"))
    with pytest.raises(OutputMissing, match=f"in run '{run.id}' is gone from the object store"):
        run.result("big")
    run.purge()
    fs.invalidate_cache()
    assert fs.find(f"dagrq-test/objects/{run.id}") == []
