"""Arbitrary JSON at the ingest and query endpoints never gets a 500 or a traceback."""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**20), 10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from(
    [
        "name",
        "type",
        "value",
        "tags",
        "timestamp",
        "window",
        "metrics",
        "aggregation",
        "filters",
        "group_by",
        "start_time",
        "end_time",
        "percentiles",
        "limit",
        "tags.k",
    ]
)
shaped = st.dictionaries(keys, json_values | st.dictionaries(keys, json_values, max_size=3), max_size=6)
bodies = st.one_of(
    st.builds(lambda points: {"metrics": points}, st.lists(shaped | json_values, max_size=5)),
    shaped,
    json_values,
)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture], max_examples=60)
@given(bodies)
async def test_ingest_and_query_answer_4xx_or_2xx(app, body) -> None:
    for path in ("/api/v1/metrics", "/api/v1/query"):
        _, response = await app.asgi_client.post(path, content=json.dumps(body))
        assert response.status < 500, (path, body, response.text)
        assert "Traceback" not in response.text
