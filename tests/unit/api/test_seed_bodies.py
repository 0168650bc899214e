"""Every request body in the seed document ingests and queries as the seed implies."""

from __future__ import annotations

from rtanalytics.adapters.clock import ManualClock

SINGLE = {
    "metrics": [
        {
            "name": "api.requests.count",
            "type": "count",
            "value": 1,
            "tags": {"endpoint": "/api/v1/users", "method": "GET", "status": "200"},
        }
    ]
}
BATCH = {
    "metrics": [
        {"name": "system.cpu.usage", "type": "average", "value": 45.2, "window": "1m"},
        {"name": "system.memory.used", "type": "average", "value": 2147483648, "window": "1m"},
        {
            "name": "api.response.time",
            "type": "percentile",
            "value": 125,
            "tags": {"endpoint": "/api/v1/search"},
        },
    ]
}
TIME_SERIES = {
    "metrics": ["api.requests.count", "api.errors.count"],
    "window": "5m",
    "aggregation": "sum",
    "start_time": "2024-01-01T00:00:00Z",
    "end_time": "2024-01-01T12:00:00Z",
    "group_by": ["endpoint"],
}
REAL_TIME = {
    "metrics": ["users.active"],
    "window": "1m",
    "aggregation": "unique",
    "filters": {"tags.platform": "web"},
}
WIDGET_QUERIES = [
    {"metrics": ["api.requests.count"], "window": "1m", "aggregation": "sum"},
    {"metrics": ["api.response.time"], "window": "5m", "aggregation": "percentile"},
]
FLINK = [
    {
        "name": "flink.job.records.processed",
        "type": "count",
        "value": 1000000,
        "tags": {"job_id": "activity-stream"},
    }
]
AIRFLOW = [
    {
        "name": "airflow.dag.duration",
        "type": "average",
        "value": 12.5,
        "tags": {"dag_id": "etl", "task_id": "load"},
    }
]
BUSINESS = [
    {"name": "business.orders.processed", "type": "count", "value": 1, "tags": {"status": "paid"}},
    {"name": "business.order.value", "type": "sum", "value": 99.5},
]


async def post(app, path, body):
    _, response = await app.asgi_client.post(path, json=body)
    return response


async def test_single_metric_then_current(app) -> None:
    response = await post(app, "/api/v1/metrics", SINGLE)
    assert response.status == 202 and response.json == {"accepted": 1, "rejected": []}
    _, current = await app.asgi_client.get("/api/v1/metrics/api.requests.count/current")
    assert current.status == 200
    assert current.json["results"][0]["value"] == 1
    _, filtered = await app.asgi_client.get("/api/v1/metrics/api.requests.count/current?tags.method=POST")
    assert filtered.json["results"][0]["value"] is None


async def test_batch_metrics(app) -> None:
    response = await post(app, "/api/v1/metrics", BATCH)
    assert response.status == 202 and response.json["accepted"] == 3
    _, cpu = await app.asgi_client.get("/api/v1/metrics/system.cpu.usage/current")
    assert cpu.json["results"][0] | {} == {
        "metric": "system.cpu.usage",
        "group": {},
        "aggregation": "avg",
        "window": "1m",
        "value": 45.2,
    }
    _, latency = await app.asgi_client.get("/api/v1/metrics/api.response.time/current")
    value = latency.json["results"][0]["value"]
    assert set(value) == {"p50", "p95", "p99"} and abs(value["p99"] - 125) <= 1.25


async def test_time_series_query_over_the_seed_range(app, clock: ManualClock) -> None:
    start = 1_704_067_200  # 2024-01-01T00:00:00Z
    points = []
    for k, endpoint in enumerate(["/api/v1/users", "/api/v1/search"]):
        for minute in range(0, 720, 7):
            points.append(
                {
                    "name": "api.requests.count",
                    "type": "count",
                    "value": k + 1,
                    "tags": {"endpoint": endpoint},
                    "timestamp": start + minute * 60 + 5,
                }
            )
        points.append(
            {
                "name": "api.errors.count",
                "type": "count",
                "tags": {"endpoint": endpoint},
                "timestamp": start + 90,
            }
        )
    assert (await post(app, "/api/v1/metrics", {"metrics": points})).json["accepted"] == len(points)
    response = await post(app, "/api/v1/query", TIME_SERIES)
    assert response.status == 200, response.json
    body = response.json
    assert body["meta"]["resolution"] == "1m"
    by_key = {(r["metric"], r["group"]["endpoint"]): r for r in body["results"]}
    assert set(by_key) == {
        (m, e) for m in TIME_SERIES["metrics"] for e in ["/api/v1/users", "/api/v1/search"]
    }
    users = by_key[("api.requests.count", "/api/v1/users")]["points"]
    assert users[0] == {"timestamp": "2024-01-01T00:00:00Z", "value": 1.0}
    assert sum(p["value"] for p in users) == len(range(0, 720, 7))
    assert sum(p["value"] for p in by_key[("api.requests.count", "/api/v1/search")]["points"]) == 2 * len(
        range(0, 720, 7)
    )
    assert by_key[("api.errors.count", "/api/v1/search")]["points"] == [
        {"timestamp": "2024-01-01T00:00:00Z", "value": 1.0}
    ]


async def test_real_time_unique_query_with_a_filter(app) -> None:
    points = [
        {"name": "users.active", "type": "unique", "value": user, "tags": {"platform": platform}}
        for user, platform in [("u1", "web"), ("u2", "web"), ("u1", "web"), ("u3", "ios"), (7, "web")]
    ]
    await post(app, "/api/v1/metrics", {"metrics": points})
    response = await post(app, "/api/v1/query", REAL_TIME)
    assert response.status == 200
    assert response.json["results"] == [
        {"metric": "users.active", "group": {}, "aggregation": "unique", "window": "1m", "value": 3}
    ]


async def test_dashboard_widget_queries(app) -> None:
    await post(app, "/api/v1/metrics", SINGLE)
    await post(
        app,
        "/api/v1/metrics",
        {"metrics": [{"name": "api.response.time", "type": "percentile", "value": v} for v in range(1, 101)]},
    )
    total = await post(app, "/api/v1/query", WIDGET_QUERIES[0])
    assert total.json["results"][0]["value"] == 1
    latency = (await post(app, "/api/v1/query", WIDGET_QUERIES[1])).json["results"][0]["value"]
    assert abs(latency["p95"] - 95) <= 0.95 and abs(latency["p50"] - 50) <= 0.5


async def test_integration_examples_ingest(app) -> None:
    for points in (FLINK, AIRFLOW, BUSINESS):
        response = await post(app, "/api/v1/metrics", {"metrics": points})
        assert response.status == 202 and response.json["accepted"] == len(points)
    _, flink = await app.asgi_client.get(
        "/api/v1/metrics/flink.job.records.processed/current?tags.job_id=activity-stream"
    )
    assert flink.json["results"][0]["value"] == 1_000_000
