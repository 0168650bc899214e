"""The Prometheus export: parsed back by prometheus_client it equals the engine's values; promtool
accepts it; OpenMetrics when asked; the service's own metrics are in it."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from rtanalytics.entrypoints.http.exposition import label_name, metric_name

POINTS = [
    *(
        {"name": "api.requests.count", "type": "count", "tags": {"endpoint": e, "status": s}}
        for e in ("/a", "/b")
        for s in ("200", "500")
    ),
    {"name": "api.requests.count", "type": "count", "value": 5, "tags": {"endpoint": "/a", "status": "200"}},
    {"name": "business.order.value", "type": "sum", "value": 99.5},
    {"name": "system.cpu.usage", "type": "average", "value": 40.0, "tags": {"host": 'h"1\\'}},
    {"name": "system.cpu.usage", "type": "average", "value": 50.0, "tags": {"host": 'h"1\\'}},
    {"name": "queue.depth", "type": "max", "value": 7.0},
    {"name": "users.active", "type": "unique", "value": "u1", "tags": {"platform": "web"}},
    {"name": "users.active", "type": "unique", "value": "u2", "tags": {"platform": "web"}},
    {"name": "events.rate", "type": "rate", "value": 120.0, "window": "1m"},
    *(
        {
            "name": "api.response.time",
            "type": "percentile",
            "value": v,
            "tags": {"endpoint": "/a", "quantile": "x"},
        }
        for v in range(1, 101)
    ),
]


async def export(app, accept: str | None = None) -> tuple[str, str]:
    headers = {"accept": accept} if accept else {}
    _, response = await app.asgi_client.get("/api/v1/export/prometheus", headers=headers)
    assert response.status == 200
    return response.headers["content-type"], response.text


def samples(text: str, parser=parse_text) -> dict[tuple[str, frozenset], float]:
    return {(s.name, frozenset(s.labels.items())): s.value for f in parser(text) for s in f.samples}


async def test_export_round_trips_to_the_engine_values(app) -> None:
    _, ingested = await app.asgi_client.post("/api/v1/metrics", json={"metrics": POINTS})
    assert ingested.json["accepted"] == len(POINTS)
    content_type, text = await export(app)
    assert content_type.startswith("text/plain; version=0.0.4")
    got = samples(text)
    assert got[("api_requests_count_total", frozenset({("endpoint", "/a"), ("status", "200")}))] == 6.0
    assert got[("api_requests_count_total", frozenset({("endpoint", "/b"), ("status", "500")}))] == 1.0
    assert got[("business_order_value_total", frozenset())] == 99.5
    assert got[("system_cpu_usage", frozenset({("host", 'h"1\\')}))] == 45.0
    assert got[("queue_depth", frozenset())] == 7.0
    assert got[("users_active", frozenset({("platform", "web")}))] == 2.0
    assert got[("events_rate", frozenset())] == 2.0
    labels = {("endpoint", "/a"), ("tag_quantile", "x")}
    assert got[("api_response_time_count", frozenset(labels))] == 100
    assert got[("api_response_time_sum", frozenset(labels))] == 5050
    for quantile, exact in (("0.5", 50), ("0.95", 95), ("0.99", 99)):
        assert (
            abs(got[("api_response_time", frozenset({*labels, ("quantile", quantile)}))] - exact)
            <= 0.01 * exact
        )
    # and the engine agrees, metric by metric
    _, current = await app.asgi_client.get("/api/v1/metrics/system.cpu.usage/current")
    assert current.json["results"][0]["value"] == 45.0


async def test_types_and_help_lines(app) -> None:
    await app.asgi_client.post("/api/v1/metrics", json={"metrics": POINTS})
    _, text = await export(app)
    families = {f.name: f.type for f in parse_text(text)}
    assert families["api_requests_count"] == "counter"
    assert families["api_response_time"] == "summary"
    assert families["system_cpu_usage"] == "gauge"
    assert "# HELP system_cpu_usage system.cpu.usage (average)" in text


async def test_openmetrics_when_asked(app) -> None:
    await app.asgi_client.post("/api/v1/metrics", json={"metrics": POINTS})
    content_type, text = await export(app, "application/openmetrics-text; version=1.0.0")
    assert content_type.startswith("application/openmetrics-text")
    assert text.endswith("# EOF\n") and text.count("# EOF") == 1
    got = samples(text, parse_openmetrics)
    assert got[("api_requests_count_total", frozenset({("endpoint", "/a"), ("status", "200")}))] == 6.0


async def test_service_metrics_are_exported(app) -> None:
    await app.asgi_client.post(
        "/api/v1/metrics", json={"metrics": [*POINTS, {"name": "bad name", "type": "count"}]}
    )
    _, text = await export(app)
    got = samples(text)
    assert got[("rtanalytics_points_accepted_total", frozenset())] == len(POINTS)
    assert got[("rtanalytics_points_rejected_total", frozenset({("reason", "name")}))] == 1
    assert got[("rtanalytics_active_series", frozenset({("tenant", "default")}))] == 10
    assert got[("rtanalytics_backend_up", frozenset({("backend", "memory")}))] == 1
    assert got[("rtanalytics_live_subscriptions", frozenset())] == 0
    assert got[("rtanalytics_live_watches", frozenset())] == 0
    routes = {
        dict(labels)["route"] for name, labels in got if name == "rtanalytics_request_duration_seconds_count"
    }
    assert "/api/v1/metrics" in routes


async def test_tenants_export_only_their_own(app) -> None:
    await app.asgi_client.post(
        "/api/v1/metrics?tenant_id=a", json={"metrics": [{"name": "secret", "type": "count"}]}
    )
    _, text = await app.asgi_client.get("/api/v1/export/prometheus?tenant_id=b")
    assert "secret" not in text.text


async def test_large_metrics_come_in_chunks_without_repeated_headers(app) -> None:
    points = [
        {"name": "big", "type": "average", "value": float(i), "tags": {"i": str(i)}} for i in range(5_000)
    ]
    await app.asgi_client.post("/api/v1/metrics", json={"metrics": points})
    _, text = await export(app)
    assert text.count("# TYPE big gauge") == 1
    assert sum(1 for line in text.splitlines() if line.startswith("big{")) == 5_000


def test_names_and_labels_are_sanitised() -> None:
    assert metric_name("api.requests:count-x") == "api_requests:count_x"
    assert label_name("a.b-c") == "a_b_c"
    assert label_name("__name") == "tag___name"
    assert label_name("quantile", ("quantile",)) == "tag_quantile"


async def test_promtool_accepts_the_export(app) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool is missing: install Debian's `prometheus` package (scripts/test does)")
    await app.asgi_client.post("/api/v1/metrics", json={"metrics": POINTS})
    _, text = await export(app)
    done = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
