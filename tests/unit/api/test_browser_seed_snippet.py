"""The seed's JavaScript, run unchanged in real headless Chromium (Debian's `chromium`, driven
over the DevTools protocol), receives metric_data after a point is ingested."""

from __future__ import annotations

import httpx

from tests.unit.api.browser import chromium
from tests.unit.api.live_server import running

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


async def test_seed_snippet_receives_metric_data_in_chromium() -> None:
    async with chromium() as tools, running(8000) as (_, base):  # the port the seed's snippet names
        await tools.evaluate(HARNESS)
        await tools.evaluate(SEED_CONNECT)
        await tools.wait_for("ws.readyState === WebSocket.OPEN")
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
                            "tags": {"endpoint": "/api/v1/users", "method": "GET", "status": "200"},
                        }
                    ]
                },
            )
            assert response.status_code == 202
        received = await tools.wait_for(
            "window.received.find(d => d.metric === 'api.requests.count' && d.value === 1) || null"
        )
        assert received["aggregation"] == "sum" and received["window"] == "1m" and received["group"] == {}
