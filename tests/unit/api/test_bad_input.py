"""Bad input gets its 4xx with a message naming the field; never a 500 or a traceback."""

from __future__ import annotations

import pytest


async def send(app, path, body=None, raw=None, method="post"):
    client = app.asgi_client
    if raw is not None:
        _, response = await getattr(client, method)(path, content=raw)
    else:
        _, response = await getattr(client, method)(path, json=body)
    return response


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"not json", "body"),
        (b"", "body"),
        (b"[1,2]", "metrics"),
        (b'{"metrics": 3}', "metrics"),
        (b'{"metrics": []}', "metrics"),
        # a raw control byte deep in a long string (the scanner reads strings 16 bytes at a time)
        (
            b'{"metrics": [{"name": "a", "type": "sum", "value": 1, "tags": {"k": "'
            + b"x" * 40
            + b'\x01y"}}]}',
            "body",
        ),
    ],
)
async def test_ingest_body_shape(app, raw: bytes, field: str) -> None:
    response = await send(app, "/api/v1/metrics", raw=raw)
    assert response.status == 400
    assert response.json["error"]["details"][0]["field"] == field
    assert "Traceback" not in response.text


async def test_nan_and_infinity_literals_are_rejected(app) -> None:
    response = await send(app, "/api/v1/metrics", raw=b'{"metrics":[{"name":"a","type":"sum","value":NaN}]}')
    assert response.status == 400 and response.json["error"]["details"][0]["field"] == "body"
    response = await send(
        app, "/api/v1/metrics", raw=b'{"metrics":[{"name":"a","type":"sum","value":1e999}]}'
    )
    assert response.status == 400 and response.json["error"]["details"][0]["field"] == "body"
    response = await send(
        app, "/api/v1/metrics", raw=b'{"metrics":[{"name":"a","type":"sum","value":"Infinity"}]}'
    )
    assert response.status == 400
    assert response.json["rejected"][0]["details"][0]["field"] == "metrics[0].value"


async def test_no_valid_point_is_400_with_the_same_body(app) -> None:
    response = await send(
        app,
        "/api/v1/metrics",
        {"metrics": [{"name": "bad name", "type": "count"}, {"name": "a", "type": "x"}]},
    )
    assert response.status == 400
    assert response.json["accepted"] == 0
    assert [r["index"] for r in response.json["rejected"]] == [0, 1]
    assert response.json["rejected"][1]["details"][0] == {
        "field": "metrics[1].type",
        "message": "must be one of count, sum, average, min, max, percentile, rate, unique",
    }


async def test_mixed_points_accept_the_good_ones(app) -> None:
    response = await send(
        app,
        "/api/v1/metrics",
        {
            "metrics": [
                {"name": "a", "type": "count"},
                {"name": "a", "type": "count", "timestamp": 4_000_000_000},
                {"name": "a", "type": "count", "tags": {f"k{i}": "v" for i in range(40)}},
            ]
        },
    )
    assert response.status == 202 and response.json["accepted"] == 1
    fields = [r["details"][0]["field"] for r in response.json["rejected"]]
    assert fields == ["metrics[1].timestamp", "metrics[2].tags"]


async def test_oversized_bodies_are_413(make_app) -> None:
    app = make_app(max_request_bytes=1_000)
    response = await send(app, "/api/v1/metrics", raw=b" " * 2_000)
    assert response.status == 413 and "1000 bytes" in response.json["error"]["message"]


@pytest.mark.parametrize("extra", [{}, {"note": "x"}], ids=["read-from-bytes", "decoded-whole"])
async def test_too_many_points_is_413(app, extra: dict) -> None:
    # a body of only `metrics` is read from its bytes; with another key it goes through orjson
    body = {"metrics": [{"name": "a", "type": "count"}] * 10_001, **extra}
    response = await send(app, "/api/v1/metrics", body)
    assert response.status == 413 and "10001 points" in response.json["error"]["message"]


@pytest.mark.parametrize(
    ("query", "field", "words"),
    [
        ({}, "metrics", "required"),
        ({"metrics": ["a"], "aggregation": "median"}, "aggregation", "one of"),
        ({"metrics": ["a"], "filters": {"tags.k": {"like": "x"}}}, "filters.tags.k.like", "unknown operator"),
        ({"metrics": ["a"], "filters": {"endpoint": "x"}}, "filters.endpoint", "tags."),
        (
            {"metrics": ["a"], "filters": {"tags.k": {"regex": "("}}},
            "filters.tags.k.regex",
            "regular expression",
        ),
        ({"metrics": ["a"], "window": "5x"}, "window", "duration"),
        (
            {"metrics": ["a"], "window": "1h", "start_time": 1_704_100_000, "end_time": 1_704_101_000},
            "window",
            "larger than the range",
        ),
        (
            {"metrics": ["a"], "start_time": 1_704_100_000, "end_time": 1_704_000_000},
            "end_time",
            "after start_time",
        ),
        ({"metrics": ["a"], "end_time": 1_704_000_000}, "start_time", "required"),
        ({"metrics": ["a"], "limit": 0}, "limit", "positive"),
        ({"metrics": ["a"], "group_by": "endpoint"}, "group_by", "list"),
        ({"metrics": ["a"], "percentiles": [150]}, "percentiles", "(0, 100]"),
        ({"metrics": ["a"], "bogus": 1}, "bogus", "unknown field"),
    ],
)
async def test_bad_queries_name_the_field(app, query: dict, field: str, words: str) -> None:
    response = await send(app, "/api/v1/query", query)
    assert response.status == 400, response.json
    details = response.json["error"]["details"]
    assert any(d["field"] == field and words in d["message"] for d in details), details


async def test_query_over_max_query_size(make_app) -> None:
    app = make_app(max_query_size=50)
    response = await send(
        app,
        "/api/v1/query",
        {"metrics": ["a"], "window": "1m", "start_time": 1_704_000_000, "end_time": 1_704_100_000},
    )
    assert response.status == 400
    assert response.json["error"]["code"] == "query_too_large"
    assert (
        "1667 buckets" in response.json["error"]["message"]
        and "MAX_QUERY_SIZE=50" in response.json["error"]["message"]
    )


async def test_unknown_metric_current_is_404(app) -> None:
    _, response = await app.asgi_client.get("/api/v1/metrics/never.seen/current")
    assert response.status == 404 and "never.seen" in response.json["error"]["message"]


async def test_current_rejects_unknown_parameters(app) -> None:
    await send(app, "/api/v1/metrics", {"metrics": [{"name": "a", "type": "count"}]})
    _, response = await app.asgi_client.get("/api/v1/metrics/a/current?windw=5m&aggregation=p99")
    assert response.status == 400
    fields = {d["field"] for d in response.json["error"]["details"]}
    assert fields == {"windw"}


async def test_unknown_route_and_method(app) -> None:
    _, missing = await app.asgi_client.get("/api/v1/nothing")
    assert missing.status == 404 and missing.json["error"]["code"] == "not_found"
    _, wrong = await app.asgi_client.get("/api/v1/query")
    assert wrong.status == 405 and wrong.json["error"]["code"] == "method_not_allowed"


async def test_api_keys_decide_the_tenant(make_app) -> None:
    app = make_app(api_keys={"k1": "alpha", "k2": "beta"})
    point = {"metrics": [{"name": "a", "type": "count"}]}
    _, none = await app.asgi_client.post("/api/v1/metrics", json=point)
    assert none.status == 401
    _, bad = await app.asgi_client.post("/api/v1/metrics", json=point, headers={"X-API-Key": "nope"})
    assert bad.status == 401
    _, ok = await app.asgi_client.post("/api/v1/metrics", json=point, headers={"Authorization": "Bearer k1"})
    assert ok.status == 202
    _, mismatch = await app.asgi_client.post(
        "/api/v1/metrics?tenant_id=beta", json=point, headers={"X-API-Key": "k1"}
    )
    assert mismatch.status == 403
    _, other = await app.asgi_client.get("/api/v1/metrics/a/current", headers={"X-API-Key": "k2"})
    assert other.status == 404
    _, mine = await app.asgi_client.get("/api/v1/metrics/a/current", headers={"X-API-Key": "k1"})
    assert mine.json["results"][0]["value"] == 1


async def test_tenant_header_without_keys(app) -> None:
    point = {"metrics": [{"name": "a", "type": "count"}]}
    await app.asgi_client.post("/api/v1/metrics", json=point, headers={"X-Tenant-ID": "t1"})
    _, seen = await app.asgi_client.get("/api/v1/metrics/a/current?tenant_id=t1")
    _, unseen = await app.asgi_client.get("/api/v1/metrics/a/current")
    assert seen.status == 200 and unseen.status == 404
    _, bad = await app.asgi_client.get("/api/v1/metrics/a/current?tenant_id=a%20b")
    assert bad.status == 400 and bad.json["error"]["details"][0]["field"] == "tenant_id"


async def test_openapi_and_docs(app) -> None:
    _, doc = await app.asgi_client.get("/api/v1/openapi.json")
    assert doc.status == 200 and doc.json["openapi"].startswith("3.")
    assert {"/api/v1/metrics", "/api/v1/query", "/api/v1/metrics/{name}/current"} <= set(doc.json["paths"])
    _, page = await app.asgi_client.get("/docs")
    assert page.status == 200 and "openapi.json" in page.text
    _, health = await app.asgi_client.get("/health")
    assert health.json == {"status": "ok"}
