"""Two `rtanalytics serve --backend ignite` processes on one Ignite cluster: one service."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets

from tests.contract.conftest import clear_ignite
from tests.unit.receivers import free_port

pytestmark = pytest.mark.integration


def _serve(env: dict[str, str], writer: str, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    command = [sys.executable, "-m", "rtanalytics.entrypoints.cli", "serve", "--backend", "ignite"]
    with log.open("wb") as errors:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            env={**os.environ, **env, "RTA_WRITER_ID": writer, "LOG_LEVEL": "WARNING"},
            stdout=subprocess.DEVNULL,
            stderr=errors,
        )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"instance {writer} exited: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{base}/api/v1/health", timeout=1).status_code == 200:
                return process, base
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    process.kill()
    raise AssertionError(f"instance {writer} did not become ready")


@pytest.fixture(scope="module")
def instances(ignite_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    clear_ignite(ignite_server.env)
    logs = tmp_path_factory.mktemp("instances")
    a, base_a = _serve(ignite_server.env, "svc-a", logs / "a.log")
    b, base_b = _serve(ignite_server.env, "svc-b", logs / "b.log")
    try:
        yield base_a, base_b
    finally:
        for process in (a, b):
            process.terminate()
        for process in (a, b):
            try:
                assert process.wait(timeout=30) == 0, (logs / "a.log").read_text()[-2000:]
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _eventually(check: Any, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = await check()
        if result is not None or time.monotonic() > deadline:
            return result
        await asyncio.sleep(0.2)


async def test_two_instances_ingesting_one_series_answer_identically_and_exactly(instances) -> None:
    base_a, base_b = instances
    now = time.time()
    batch = [
        {
            "name": "jobs.done",
            "type": "count",
            "value": 1 + i % 3,
            "timestamp": now - i % 20,
            "tags": {"q": "x"},
        }
        for i in range(500)
    ]
    expected_count = 2 * 10 * 500
    expected_sum = 2 * 10 * sum(1 + i % 3 for i in range(500))
    async with httpx.AsyncClient(timeout=30) as client:

        async def post(base: str) -> None:
            for _ in range(10):
                response = await client.post(f"{base}/api/v1/metrics", json={"metrics": batch})
                assert response.status_code == 202, response.text

        await asyncio.gather(post(base_a), post(base_b))

        async def answers() -> list[Any] | None:
            out = []
            for base in (base_a, base_b):
                body = {"metrics": ["jobs.done"], "window": "5m", "aggregation": "sum", "group_by": ["q"]}
                response = await client.post(f"{base}/api/v1/query", json=body)
                assert response.status_code == 200, response.text
                count = await client.post(f"{base}/api/v1/query", json={**body, "aggregation": "count"})
                out.append((response.json()["results"], count.json()["results"]))
            done = all(
                r and r[0]["value"] == expected_sum and c[0]["value"] == expected_count for r, c in out
            )
            return out if done else None

        result = await _eventually(answers)
        assert result is not None, "the two instances did not converge on the exact totals"
        assert result[0] == result[1]
        current = [
            (await client.get(f"{base}/api/v1/metrics/jobs.done/current", params={"window": "5m"})).json()
            for base in (base_a, base_b)
        ]
        assert current[0]["results"] == current[1]["results"]
        health = (await client.get(f"{base_b}/api/v1/health")).json()
        ignite = health["backends"]["ignite"]
        assert health["backend"] == "ignite" and ignite["status"] == "up"
        assert ignite["cluster_state"] == "active" and ignite["writers"] >= 2
        assert set(ignite["cache_sizes"]) >= {"realtime_metrics", "timeseries_data", "aggregated_metrics"}


async def test_a_point_ingested_on_one_instance_reaches_a_subscriber_on_the_other(instances) -> None:
    base_a, base_b = instances
    url = base_b.replace("http://", "ws://") + "/ws/metrics/watcher?tenant_id=default"
    async with websockets.connect(url) as ws:
        assert json.loads(await ws.recv())["type"] == "connected"
        await ws.send(json.dumps({"type": "subscribe", "metrics": ["orders.placed"]}))
        assert json.loads(await ws.recv())["type"] == "subscribed"
        async with httpx.AsyncClient() as client:
            response = await client.post(
                f"{base_a}/api/v1/metrics",
                json={"metrics": [{"name": "orders.placed", "type": "count", "value": 7}]},
            )
            assert response.status_code == 202
        sent = time.monotonic()
        deadline = sent + 10
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), max(0.01, deadline - time.monotonic())))
            if message["type"] == "metric_data" and message["data"]["value"] == 7:
                break
        assert time.monotonic() - sent < 10
