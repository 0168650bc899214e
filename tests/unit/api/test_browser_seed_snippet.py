"""The seed's JavaScript, run unchanged in real headless Chromium (Debian's `chromium`, driven
over the DevTools protocol), receives metric_data after a point is ingested."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import tempfile
import time
from typing import Any

import httpx
import pytest
import websockets

from tests.unit.api.live_server import free_port, running

# The three snippets of the seed's "WebSocket API" section, verbatim.
SEED_CONNECT = "const ws = new WebSocket('ws://localhost:8000/ws/metrics/my-client-id?tenant_id=tenant1');"
SEED_SUBSCRIBE = """ws.send(JSON.stringify({
  type: 'subscribe',
  metrics: ['api.requests.count', 'api.response.time']
}));"""
SEED_RECEIVE = """ws.onmessage = (event) => {
  const data = JSON.parse(event.data);
  if (data.type === 'metric_data') {
    // Update dashboard with new data
    updateChart(data.data);
  }
};"""
# What the page provides: the dashboard's updateChart.
HARNESS = "window.received = []; function updateChart(data) { window.received.push(data); }"


class DevTools:
    """Just enough of the Chrome DevTools protocol to run scripts in a page."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = 0

    async def evaluate(self, expression: str) -> Any:
        self.ids += 1
        await self.ws.send(
            json.dumps(
                {
                    "id": self.ids,
                    "method": "Runtime.evaluate",
                    "params": {"expression": expression, "returnByValue": True},
                }
            )
        )
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == self.ids:
                result = reply["result"]
                if "exceptionDetails" in result:
                    raise AssertionError(f"script failed: {result['exceptionDetails']}")
                return result["result"].get("value")


async def wait_for(tools: DevTools, expression: str, timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await tools.evaluate(expression)
        if value:
            return value
        await asyncio.sleep(0.1)
    raise AssertionError(f"{expression} did not become true within {timeout}s")


async def test_seed_snippet_receives_metric_data_in_chromium() -> None:
    browser = shutil.which("chromium")
    if browser is None:
        pytest.fail("chromium is missing: install Debian's `chromium` package (scripts/test does)")
    debug_port = free_port()
    with tempfile.TemporaryDirectory() as profile:
        chrome = subprocess.Popen(
            [
                browser,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={debug_port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            async with running(8000) as (_, base):  # the port the seed's snippet names
                targets: list[dict[str, Any]] = []
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and not targets:
                    try:
                        listed = httpx.get(f"http://127.0.0.1:{debug_port}/json/list", timeout=2).json()
                        targets = [t for t in listed if t.get("type") == "page"]
                    except httpx.HTTPError:
                        await asyncio.sleep(0.2)
                assert targets, "chromium did not open a page"
                async with websockets.connect(targets[0]["webSocketDebuggerUrl"], max_size=2**24) as cdp:
                    tools = DevTools(cdp)
                    await tools.evaluate(HARNESS)
                    await tools.evaluate(SEED_CONNECT)
                    await wait_for(tools, "ws.readyState === WebSocket.OPEN")
                    await tools.evaluate(SEED_SUBSCRIBE)
                    await tools.evaluate(SEED_RECEIVE)
                    async with httpx.AsyncClient() as client:
                        response = await client.post(
                            f"{base}/api/v1/metrics?tenant_id=tenant1",
                            json={
                                "metrics": [
                                    {
                                        "name": "api.requests.count",
                                        "type": "count",
                                        "value": 1,
                                        "tags": {
                                            "endpoint": "/api/v1/users",
                                            "method": "GET",
                                            "status": "200",
                                        },
                                    }
                                ]
                            },
                        )
                        assert response.status_code == 202
                    received = await wait_for(
                        tools,
                        "window.received.find(d => d.metric === 'api.requests.count' && d.value === 1) || null",
                    )
                    assert (
                        received["aggregation"] == "sum"
                        and received["window"] == "1m"
                        and received["group"] == {}
                    )
        finally:
            chrome.terminate()
            chrome.wait(timeout=30)
