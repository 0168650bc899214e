"""Helpers for the HTTP benchmarks: start servers, drive wrk, read its figures."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = ROOT / ".venv" / "bin"


def wait_http(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout}s")


@contextmanager
def rtanalytics_server(
    port: int, *extra: str, env: dict[str, str] | None = None, cpus: str | None = None
) -> Iterator[str]:
    """`rtanalytics serve` in its own process; yields its base URL. `cpus` ("0"): pin it there
    (taskset), so that load generators pinned elsewhere do not take its CPU."""
    run_env = {**os.environ, "LOG_LEVEL": "WARNING", **(env or {})}
    pin = ["taskset", "-c", cpus] if cpus is not None else []
    proc = subprocess.Popen(  # output to nowhere: a pipe that is never read would stall the service
        [*pin, str(VENV_BIN / "rtanalytics"), "serve", "--port", str(port), *extra],
        env=run_env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{base}/health")
        yield base
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def server_pid(port: int) -> int:
    """The pid of the `rtanalytics serve` listening on `port`."""
    out = subprocess.run(["pgrep", "-f", f"serve --port {port}"], capture_output=True, text=True).stdout
    return int(out.split()[0])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@contextmanager
def body_dir(bodies: list[bytes]) -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="rta-bench-") as folder:
        for k, body in enumerate(bodies, start=1):
            Path(folder, f"body{k}").write_bytes(body)
        yield folder


def wrk(
    url: str, folder: str, count: int, content_type: str, seconds: int, connections: int, threads: int = 1
) -> dict[str, float]:
    """Run wrk with bench/post_bodies.lua; return requests/s and latency figures."""
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install wrk")
    out = subprocess.run(
        [
            "wrk",
            f"-t{threads}",
            f"-c{connections}",
            f"-d{seconds}s",
            "--latency",
            "-s",
            str(ROOT / "bench" / "post_bodies.lua"),
            url,
            "--",
            folder,
            str(count),
            content_type,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: (.*)", out)
    return {
        "rps": rps,
        "non2xx": float(bad.group(1)) if bad else 0.0,
        "socket_errors": 1.0 if errors else 0.0,
        "raw": out,
    }  # type: ignore[dict-item]
