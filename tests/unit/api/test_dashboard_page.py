"""End to end in real headless Chromium: the seed's dashboard, created through the API, drawn by
the page, and kept live: the line chart and the gauge show newly ingested values."""

from __future__ import annotations

import os
from pathlib import Path

import httpx

from tests.unit.api.browser import chromium
from tests.unit.api.live_server import running
from tests.unit.api.test_dashboards_api import SEED_DASHBOARD

ARTIFACTS = Path(os.environ.get("RTA_TEST_ARTIFACTS", Path(__file__).resolve().parents[3] / "test-artifacts"))


async def test_the_seed_dashboard_draws_and_stays_live() -> None:
    async with (
        running() as (_, base),
        chromium(1280, 640) as tools,
        httpx.AsyncClient(base_url=base) as client,
    ):
        created = await client.post("/api/v1/dashboards", json=SEED_DASHBOARD)
        assert created.status_code == 201
        dashboard_id = created.json()["id"]
        await client.post(
            "/api/v1/metrics", json={"metrics": [{"name": "api.requests.count", "type": "count", "value": 2}]}
        )
        await tools.call("Page.enable")
        await tools.call("Page.navigate", url=f"{base}/dashboards/{dashboard_id}")
        await tools.wait_for("document.querySelector('#status').dataset.state === 'live'")
        assert (
            await tools.evaluate("document.querySelector('#title').textContent")
            == "API Performance Dashboard"
        )
        # the chart starts from history; the gauge has no data yet and says so
        await tools.wait_for(
            "document.querySelector('[data-widget-id=requests-chart]').dataset.lastValue === '2'"
        )
        assert (
            await tools.evaluate(
                "document.querySelector('[data-widget-id=response-time-gauge]').dataset.state"
            )
            == "empty"
        )
        # new points arrive live
        await client.post(
            "/api/v1/metrics",
            json={
                "metrics": [
                    {"name": "api.requests.count", "type": "count", "value": 5},
                    *(
                        {"name": "api.response.time", "type": "percentile", "value": v}
                        for v in range(100, 800, 7)
                    ),
                ]
            },
        )
        await tools.wait_for(
            "document.querySelector('[data-widget-id=requests-chart]').dataset.lastValue === '7'"
        )
        gauge = await tools.wait_for(
            "(() => { const g = document.querySelector('[data-widget-id=response-time-gauge]');"
            " return g.dataset.state === 'live' && {value: JSON.parse(g.dataset.lastValue), color: g.dataset.color,"
            " text: g.querySelector('.value').textContent}; })()"
        )
        exact_p95 = sorted(range(100, 800, 7))[int(0.95 * (len(range(100, 800, 7)) - 1))]
        assert abs(gauge["value"]["p95"] - exact_p95) <= 0.01 * exact_p95
        assert gauge["color"] == "#e5b50b"  # p95 ~ 758: past the 500 threshold (yellow), short of 1000
        assert float(gauge["text"]) == round(gauge["value"]["p95"], 3)  # the number drawn in the gauge
        points = int(
            await tools.evaluate("document.querySelector('[data-widget-id=requests-chart]').dataset.points")
        )
        assert points >= 1
        assert await tools.evaluate("!!document.querySelector('[data-widget-id=requests-chart] canvas')")
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        await tools.screenshot(str(ARTIFACTS / "dashboard.png"))
        # deleting the dashboard shows a clear state
        await client.delete(f"/api/v1/dashboards/{dashboard_id}")
        await tools.call("Page.reload")
        await tools.wait_for("document.querySelector('#status').dataset.state === 'deleted'")
        assert await tools.evaluate("!document.querySelector('#gone').hidden")
