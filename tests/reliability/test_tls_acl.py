"""Least privilege and TLS: dagrq runs as a Redis ACL user limited to dagrq's and RQ's keys
and RQ's channels, over ``rediss://`` with a self-signed CA; the password appears in no log,
event, status, command line or error message."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import redis

from dagrq import loader
from dagrq.connection import connect

from ..helpers import pipeline
from .servers import Fleet, RedisServer, free_port

PASSWORD = "Zq9-secret-pw"
#: the ACL rules a dagrq user needs (docs/reliability.md lists them)
ACL = (
    "on >{pw} resetkeys ~dagrq:* ~rq:* resetchannels &rq:pubsub:* "
    "-@all +@read +@write +@keyspace +@list +@hash +@set +@sortedset +@string +@stream "
    "+@scripting +@transaction +@connection +@pubsub +@blocking +info +client|setname "
    "+client|getname -keys -flushall -flushdb"
)


def _tls_files(folder: Path) -> dict[str, Path]:
    """A CA and a server certificate for 127.0.0.1 signed by it (openssl)."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {k: folder / f"{k}" for k in ("ca.key", "ca.crt", "srv.key", "srv.csr", "srv.crt")}
    ext = folder / "ext.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
            "-subj", "/CN=dagrq-test-ca", "-keyout", str(files["ca.key"]),
            "-out", str(files["ca.crt"]))  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", str(files["srv.key"]), "-out", str(files["srv.csr"]))  # fmt: skip
    openssl("x509", "-req", "-in", str(files["srv.csr"]), "-CA", str(files["ca.crt"]),
            "-CAkey", str(files["ca.key"]), "-CAcreateserial", "-days", "2",
            "-extfile", str(ext), "-out", str(files["srv.crt"]))  # fmt: skip
    return files


def test_dagrq_works_as_a_limited_acl_user_over_tls_and_never_shows_the_password(
    tmp_path: Path,
) -> None:
    files = _tls_files(tmp_path / "tls")
    port = free_port()
    server = RedisServer(
        tmp_path / "redis",
        port=free_port(),
        args=[
            "--tls-port", str(port),
            "--tls-cert-file", str(files["srv.crt"]),
            "--tls-key-file", str(files["srv.key"]),
            "--tls-ca-cert-file", str(files["ca.crt"]),
            "--tls-auth-clients", "no",
        ],
    ).start()  # fmt: skip
    admin = server.client()
    # + the keys the test pipelines' own bodies count in (a user's nodes need their own keys)
    rules = [*ACL.format(pw=PASSWORD).split(), "~test:*"]
    admin.execute_command("ACL", "SETUSER", "dagrq", *rules)
    url = f"rediss://dagrq:{PASSWORD}@127.0.0.1:{port}/0?ssl_ca_certs={files['ca.crt']}"
    conn = connect(url)
    assert conn.ping()
    with pytest.raises(redis.exceptions.NoPermissionError):
        conn.set("someone:else", 1)  # the user is limited to dagrq's and RQ's keys
    address = pipeline("ticking")
    dag = loader.load(address)
    fleet = Fleet(url, tmp_path / "logs")
    try:
        procs = fleet.start(address, 1, "--lease", "6")
        procs += fleet.start(pipeline("diamond"), 1, "--isolate")
        diamond = loader.load(pipeline("diamond")).submit(conn, x=3)
        assert diamond.wait(timeout=60).state == "succeeded"
        run = dag.submit(conn, ticks=4)
        assert run.wait(timeout=60).state == "succeeded"
        canceled = dag.submit(conn)  # cancel works with the channel rights granted
        canceled.cancel()
        outputs = [fleet.logs()]
        for args in (("status", run.id), ("events", run.id), ("why", run.id, "tick")):
            done = subprocess.run(
                [sys.executable, "-m", "dagrq", *args, "--url", url],
                capture_output=True,
                text=True,
                timeout=60,
            )
            assert done.returncode == 0, done.stderr
            outputs += [done.stdout, done.stderr]
        wrong = subprocess.run(
            [
                sys.executable,
                "-m",
                "dagrq",
                "status",
                run.id,
                "--url",
                url.replace(PASSWORD, "nope-wrong-pw"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert wrong.returncode == 2 and "***" in wrong.stderr
        outputs += [wrong.stdout, wrong.stderr, ("nope-wrong-pw" in wrong.stderr and "LEAK") or ""]
        for proc in procs:
            tree = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
            outputs += [" ".join(p.cmdline()) for p in tree]
        for event in run.events(follow=False):
            outputs.append(str(event))
        leaks = [o for o in outputs if PASSWORD in o or "LEAK" in o]
        assert leaks == []
    finally:
        fleet.procs.stop()
        server.stop()
