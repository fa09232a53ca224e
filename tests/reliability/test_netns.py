"""Workers on two hosts: two network namespaces made by the test (veth pairs, addresses from
the benchmarking range 198.18.0.0/15), Redis in the root namespace. A run spreads over both;
cutting one host's link mid-run loses its worker, and its node is re-driven on the other."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dagrq import loader
from dagrq.workers.processes import Processes, worker_argv

from ..helpers import pipeline, wait_for
from .servers import RedisServer, free_port


def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


@dataclass
class Host:
    """One network namespace joined to the root one by a veth pair."""

    name: str
    root_if: str
    address: str  # the root side's address, which the host reaches Redis on
    net: int

    def cut(self) -> None:
        ip("link", "set", self.root_if, "down")

    def mend(self) -> None:
        ip("link", "set", self.root_if, "up")


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    tag = uuid.uuid4().hex[:5]
    made: list[Host] = []
    try:
        ip("netns", "add", f"dagrq-probe-{tag}")
        ip("netns", "del", f"dagrq-probe-{tag}")
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        why = f"network namespaces need root and iproute2 ({exc})"
        if os.environ.get("DAGRQ_REQUIRE_SERVERS"):
            pytest.fail(why)
        pytest.skip(why)
    # two /30 subnets of the range picked by the tag: another suite's hosts use others
    first = int(tag, 16) % 16_000 * 2
    try:
        for net, letter in ((first, "a"), (first + 1, "b")):
            ns, root_if, ns_if = f"dagrq-{letter}-{tag}", f"dq{letter}0{tag}", f"dq{letter}1{tag}"
            subnet = ipaddress.ip_network("198.18.0.0/15").network_address + 4 * net
            root_ip, ns_ip = str(subnet + 1), str(subnet + 2)
            ip("netns", "add", ns)
            ip("link", "add", root_if, "type", "veth", "peer", "name", ns_if)
            ip("link", "set", ns_if, "netns", ns)
            ip("addr", "add", f"{root_ip}/30", "dev", root_if)
            ip("link", "set", root_if, "up")
            ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
            ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
            ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
            made.append(Host(ns, root_if, root_ip, net))
        yield made
    finally:
        for host in made:
            subprocess.run(["ip", "link", "del", host.root_if], capture_output=True)
            subprocess.run(["ip", "netns", "del", host.name], capture_output=True)


def test_a_run_spreads_over_two_hosts_and_a_cut_off_host_is_re_driven_on_the_other(
    hosts: list[Host], tmp_path: Path
) -> None:
    port = free_port()
    server = RedisServer(
        tmp_path / "redis",
        port=port,
        bind=["127.0.0.1", *[h.address for h in hosts]],
        args=["--protected-mode", "no", "--appendonly", "yes"],
    ).start()
    address = pipeline("hosts")
    dag = loader.load(address)
    groups: list[Processes] = []
    try:
        for host in hosts:
            url = f"redis://{host.address}:{port}/0"
            procs = Processes(
                tmp_path / host.name,
                env={"DAGRQ_URL": url, "TEST_HOST": host.name, "DAGRQ_LOG": "WARNING"},
            )
            argv = worker_argv(address, "--lease", "5")
            procs.start(["ip", "netns", "exec", host.name, *argv], 1)
            groups.append(procs)
        conn = server.client()
        run = dag.submit(conn, seed=10)

        def running_on(host: Host) -> list[str]:
            """Nodes running now whose latest attempt is on ``host``."""
            states = run.status().nodes
            return [
                name
                for name, node in states.items()
                if node.state == "running"
                and (conn.lrange(f"test:ran:{run.id}:{name}", -1, -1) or [b""])[0].decode()
                == host.name
            ]

        lost = wait_for(lambda: running_on(hosts[0]), 60, "a node running on host a")
        hosts[0].cut()  # host a drops off the network with its node half done
        final = run.wait(timeout=90)
        assert final.state == "succeeded"
        assert run.result("join") == sum(10 + i for i in range(1, 7))
        ran = {
            k.decode().rsplit(":", 1)[1]: [h.decode() for h in conn.lrange(k, 0, -1)]
            for k in conn.scan_iter(f"test:ran:{run.id}:*")
        }
        assert hosts[0].name in {h for hs in ran.values() for h in hs}  # both hosts worked
        assert hosts[1].name in {h for hs in ran.values() for h in hs}
        assert ran[lost[0]][-1] == hosts[1].name  # the cut-off node ran again on host b
        assert final.nodes[lost[0]].attempts >= 2
        hosts[0].mend()  # host a comes back: its late report is refused, its worker goes on
        again = dag.submit(conn, seed=1)
        assert again.wait(timeout=90).state == "succeeded"
        assert [p.poll() for g in groups for p, _ in g.procs] == [None, None]
    finally:
        for group in groups:
            group.stop(grace_s=10)
        server.stop()
