"""The dashboards API: the seed's body unchanged, every route and status code, every
validation rule, versions and tenant isolation."""

from __future__ import annotations

import copy

import pytest

SEED_DASHBOARD = {
    "name": "API Performance Dashboard",
    "description": "Real-time API performance metrics",
    "refresh_interval": 5,
    "widgets": [
        {
            "id": "requests-chart",
            "type": "line_chart",
            "title": "API Requests",
            "metric_query": {"metrics": ["api.requests.count"], "window": "1m", "aggregation": "sum"},
            "position": {"x": 0, "y": 0, "width": 6, "height": 4},
        },
        {
            "id": "response-time-gauge",
            "type": "gauge",
            "title": "Response Time (95th percentile)",
            "metric_query": {"metrics": ["api.response.time"], "window": "5m", "aggregation": "percentile"},
            "visualization_config": {
                "min": 0,
                "max": 1000,
                "thresholds": [
                    {"value": 100, "color": "green"},
                    {"value": 500, "color": "yellow"},
                    {"value": 1000, "color": "red"},
                ],
            },
            "position": {"x": 6, "y": 0, "width": 6, "height": 4},
        },
    ],
}


async def test_crud_and_data(app) -> None:
    client = app.asgi_client
    _, created = await client.post("/api/v1/dashboards", json=SEED_DASHBOARD)
    assert created.status == 201
    dashboard_id = created.json["id"]
    assert created.json["name"] == "API Performance Dashboard" and created.json["version"] == 1
    assert created.json["widgets"] == SEED_DASHBOARD["widgets"]
    await client.post(
        "/api/v1/metrics",
        json={
            "metrics": [
                {"name": "api.requests.count", "type": "count", "value": 4},
                *({"name": "api.response.time", "type": "percentile", "value": v} for v in range(1, 101)),
            ]
        },
    )
    _, data = await client.get(f"/api/v1/dashboards/{dashboard_id}/data")
    assert data.status == 200
    widgets = data.json["widgets"]
    assert widgets["requests-chart"]["results"][0]["value"] == 4
    assert abs(widgets["response-time-gauge"]["results"][0]["value"]["p95"] - 95) <= 0.95
    _, got = await client.get(f"/api/v1/dashboards/{dashboard_id}")
    assert got.status == 200 and got.json["refresh_interval"] == 5
    changed = {**copy.deepcopy(SEED_DASHBOARD), "name": "Renamed", "version": 1}
    _, updated = await client.put(f"/api/v1/dashboards/{dashboard_id}", json=changed)
    assert updated.status == 200 and updated.json["version"] == 2 and updated.json["name"] == "Renamed"
    _, stale = await client.put(f"/api/v1/dashboards/{dashboard_id}", json={**SEED_DASHBOARD, "version": 1})
    assert stale.status == 409
    _, deleted = await client.delete(f"/api/v1/dashboards/{dashboard_id}")
    assert deleted.status == 204
    for method, path in (("get", ""), ("get", "/data"), ("delete", "")):
        _, gone = await getattr(client, method)(f"/api/v1/dashboards/{dashboard_id}{path}")
        assert gone.status == 404


async def test_list_is_paged_newest_first_and_filters_by_name(app, clock) -> None:
    for i in range(5):
        await app.asgi_client.post("/api/v1/dashboards", json={"name": f"board {i}" if i != 3 else "special"})
        clock.advance(1)
    _, first = await app.asgi_client.get("/api/v1/dashboards?limit=2")
    assert [d["name"] for d in first.json["dashboards"]] == ["board 4", "special"] and first.json[
        "total"
    ] == 5
    _, second = await app.asgi_client.get("/api/v1/dashboards?limit=2&offset=2")
    assert [d["name"] for d in second.json["dashboards"]] == ["board 2", "board 1"]
    _, named = await app.asgi_client.get("/api/v1/dashboards?name=SPEC")
    assert [d["name"] for d in named.json["dashboards"]] == ["special"]
    _, bad = await app.asgi_client.get("/api/v1/dashboards?limit=0")
    assert bad.status == 400 and bad.json["error"]["details"][0]["field"] == "limit"


def widget(**change):
    base = copy.deepcopy(SEED_DASHBOARD["widgets"][0])
    base.update(change)
    return base


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"widgets": [widget(type="pie_chart")]}, "widgets[0].type", "one of"),
        (
            {"widgets": [widget(), widget(position={"x": 6, "y": 0, "width": 6, "height": 4})]},
            "widgets[1].id",
            "already the id",
        ),
        (
            {"widgets": [widget(), widget(id="b", position={"x": 3, "y": 2, "width": 6, "height": 4})]},
            "widgets",
            "overlap",
        ),
        (
            {"widgets": [widget(position={"x": 8, "y": 0, "width": 6, "height": 4})]},
            "widgets[0].position",
            "12-column",
        ),
        (
            {"widgets": [widget(position={"x": -1, "y": 0, "width": 6, "height": 4})]},
            "widgets[0].position.x",
            "at least 0",
        ),
        (
            {"widgets": [widget(metric_query={"metrics": ["a"], "aggregation": "median"})]},
            "widgets[0].metric_query.aggregation",
            "one of",
        ),
        (
            {"widgets": [widget(metric_query={"metrics": ["a"], "filters": {"tags.k": {"like": "x"}}})]},
            "widgets[0].metric_query.filters.tags.k.like",
            "unknown operator",
        ),
        (
            {
                "widgets": [
                    widget(
                        visualization_config={
                            "thresholds": [{"value": 500, "color": "red"}, {"value": 100, "color": "green"}]
                        }
                    )
                ]
            },
            "widgets[0].visualization_config.thresholds",
            "ascend",
        ),
        ({"refresh_interval": 0}, "refresh_interval", "at least 1"),
        ({"name": ""}, "name", "required"),
        ({"colour": "blue"}, "colour", "unknown field"),
    ],
)
async def test_each_validation_rule(app, body: dict, field: str, words: str) -> None:
    _, response = await app.asgi_client.post("/api/v1/dashboards", json={"name": "d", **body})
    assert response.status == 400
    details = response.json["error"]["details"]
    assert any(d["field"] == field and words in d["message"] for d in details), details


async def test_every_problem_is_reported(app) -> None:
    body = {"name": "", "refresh_interval": 0, "widgets": [widget(type="pie", metric_query={})]}
    _, response = await app.asgi_client.post("/api/v1/dashboards", json=body)
    fields = {d["field"] for d in response.json["error"]["details"]}
    assert {"name", "refresh_interval", "widgets[0].type", "widgets[0].metric_query.metrics"} <= fields


async def test_tenants_are_isolated(app) -> None:
    _, created = await app.asgi_client.post("/api/v1/dashboards?tenant_id=a", json=SEED_DASHBOARD)
    _, other = await app.asgi_client.get(f"/api/v1/dashboards/{created.json['id']}?tenant_id=b")
    assert other.status == 404
    _, listed = await app.asgi_client.get("/api/v1/dashboards?tenant_id=b")
    assert listed.json["dashboards"] == []


async def test_pages_and_assets_are_served(app) -> None:
    _, page = await app.asgi_client.get("/dashboards/anything")
    assert (
        page.status == 200
        and "/static/dashboard.js" in page.text
        and "/static/uPlot.iife.min.js" in page.text
    )
    _, listing = await app.asgi_client.get("/dashboards")
    assert listing.status == 200
    _, js = await app.asgi_client.get("/static/uPlot.iife.min.js")
    assert js.status == 200 and js.headers["content-type"] == "application/javascript"
    _, missing = await app.asgi_client.get("/static/nope.js")
    assert missing.status == 404
