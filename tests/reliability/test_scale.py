"""Scale limits: graph work on a 10,000-node chain in bounded time and memory, large joins,
chains and maps that run to the end, outputs over the limit refused in one clear line. (The
full sizes, 10,000-node runs and 100,000-item maps, are `python -m benchmarks scale`.)"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from dagrq import OutputTooLarge, RunFailed, loader

from .servers import Fleet, RedisServer


def chain_source(name: str, n: int) -> str:
    lines = ["from dagrq import DAG", f"dag = DAG({name!r})", "", "@dag.node", "def n0() -> int:"]
    lines += ["    return 0", ""]
    for i in range(1, n):
        lines += ["@dag.node", f"def n{i}(n{i - 1}: int) -> int:", f"    return n{i - 1} + 1", ""]
    return "\n".join(lines)


def join_source(name: str, n: int) -> str:
    lines = ["from dagrq import DAG", f"dag = DAG({name!r})", ""]
    for i in range(n):
        lines += ["@dag.node", f"def p{i}() -> int:", f"    return {i}", ""]
    params = ", ".join(f"p{i}: int" for i in range(n))
    lines += [
        "@dag.node",
        f"def join({params}) -> int:",
        f"    return sum([{', '.join(f'p{i}' for i in range(n))}])",
        "",
    ]
    return "\n".join(lines)


def measured(code: str) -> dict[str, float]:
    """Run ``code`` in a fresh interpreter; its wall seconds and peak memory (MiB)."""
    probe = (
        "import json, resource, sys, time\nt = time.perf_counter()\n" + code + "\n"
        "print(json.dumps({'s': time.perf_counter() - t, "
        "'mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_graph_work_on_a_10000_node_chain_stays_small(tmp_path: Path) -> None:
    path = tmp_path / "chain10k.py"
    path.write_text(chain_source("chain10k", 10_000))
    figures = measured(
        "from dagrq import loader\nfrom dagrq.model.preflight import preflight\n"
        f"dag = loader.load({str(path) + ':dag'!r})\ndag.validate()\n"
        "report = preflight(dag.plan, dag.param_types)\ntext = '\\n'.join(report.lines())\n"
        "dot = dag.to_dot(); mermaid = dag.to_mermaid()\n"
        "assert report.critical_path[-1] == 'n9999' and len(text) < 5000\n"
    )
    print(f"validate + plan + dot on 10,000 nodes: {figures['s']:.1f} s, {figures['mib']:.0f} MiB")
    assert figures["mib"] < 1024  # its time is a benchmark's (benchmarks/scale.py), not a test's


def test_a_2000_node_chain_and_a_2000_parent_join_run_to_the_end(
    server: RedisServer, fleet: Fleet, tmp_path: Path
) -> None:
    chain, join = tmp_path / "chain2k.py", tmp_path / "join2k.py"
    chain.write_text(chain_source("chain2k", 2000))
    join.write_text(join_source("join2k", 2000))
    conn = server.client()
    for path in (chain, join):
        fleet.start(f"{path}:dag", 2)
    chain_run = loader.load(f"{chain}:dag").submit(conn)
    join_run = loader.load(f"{join}:dag").submit(conn)
    assert join_run.wait(timeout=240).state == "succeeded"
    assert join_run.result("join") == sum(range(2000))
    assert chain_run.wait(timeout=240).state == "succeeded"
    assert chain_run.result("n1999") == 1999


def test_outputs_over_the_limit_fail_in_one_clear_line_and_a_raised_limit_takes_them(
    server: RedisServer, fleet: Fleet
) -> None:
    address = str(Path(__file__).resolve().parents[1] / "pipelines" / "big.py")
    dag = loader.load(f"{address}:dag")
    roomy = loader.load(f"{address}:roomy")
    conn = server.client()
    fleet.start(f"{address}:dag", 1)
    fleet.start(f"{address}:roomy", 1)
    with pytest.raises(RunFailed) as info:
        dag.submit(conn, mb=20).wait(timeout=60)
    error = info.value.failed["blob"]
    assert error.startswith("OutputTooLarge: output of node 'blob' is 20,971,5")
    assert "over its limit of 10,485,760" in error and "max_output_bytes" in error
    run = roomy.submit(conn, mb=20)  # max_output_bytes=32 MiB
    assert run.wait(timeout=120).state == "succeeded"
    assert run.result("size") == 20 * 2**20 + 2  # the JSON string's quotes
    with pytest.raises(RunFailed, match="OutputTooLarge"):
        loader.load(f"{address}:dag").run_local(mb=11)  # the same limit in-process
    assert issubclass(OutputTooLarge, Exception)
