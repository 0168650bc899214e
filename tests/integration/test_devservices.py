"""The launcher's promises: several Ignite nodes on one host form one cluster; `up` is idempotent
and prints export lines only."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.integration.servers import LAUNCHER, ROOT

pytestmark = pytest.mark.integration


def server_nodes(port: int) -> list[str]:
    from pyignite import Client

    client = Client(timeout=10.0)
    with client.connect("127.0.0.1", port):
        return sorted(
            row[0] for row in client.sql("SELECT CONSISTENT_ID FROM SYS.NODES WHERE IS_CLIENT = FALSE")
        )


def test_up_is_idempotent_and_prints_only_exports(ignite_server) -> None:
    if ignite_server.env.get("IGNITE_HOST") not in ("127.0.0.1", "localhost"):
        pytest.fail("this test drives scripts/devservices; point IGNITE_HOST at 127.0.0.1 or unset it")
    done = subprocess.run(
        [str(LAUNCHER), "up", "ignite"], capture_output=True, text=True, check=True, timeout=300
    )
    lines = done.stdout.strip().splitlines()
    assert lines and all(line.startswith("export ") for line in lines)
    assert "already running" in done.stderr


def test_two_ignite_nodes_on_one_host_form_one_cluster(ignite_server) -> None:
    home = Path(os.environ.get("RTA_DEVSERVICES_HOME", ROOT / ".devservices"))
    pidfile = home / "run" / "ignite-2.pid"
    started_here = not pidfile.exists()
    done = subprocess.run(
        [str(LAUNCHER), "up", "ignite", "--ignite-nodes", "2"],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "export IGNITE_PORTS=10800,10801" in done.stdout
    try:
        deadline = time.monotonic() + 60
        while server_nodes(10800) != ["rta-node-1", "rta-node-2"] and time.monotonic() < deadline:
            time.sleep(1)
        assert server_nodes(10800) == ["rta-node-1", "rta-node-2"]
        assert server_nodes(10801) == ["rta-node-1", "rta-node-2"]
    finally:
        if started_here and pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGTERM)
            pidfile.unlink()
