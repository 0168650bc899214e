"""The oracle: for random points and queries the engine equals brute force over the raw points.

Exact for count/sum/avg/min/max/last/rate; within the sketch bounds for percentiles and unique.
"""

from __future__ import annotations

import asyncio
import math
from typing import Any

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from rtanalytics import Engine
from rtanalytics.adapters.clock import ManualClock
from rtanalytics.core.planner import plan_trailing
from rtanalytics.core.query import parse_query
from rtanalytics.core.states import PERCENTILE_NAMES, percentile_key
from rtanalytics.core.windows import align, default_tiers

NOW = 1_700_000_000.0 + 0.37
TYPES = {
    "c": "count",
    "s": "sum",
    "a": "average",
    "lo": "min",
    "hi": "max",
    "p": "percentile",
    "r": "rate",
    "u": "unique",
}
AGGS = {
    "count": ["count", "sum", "avg", "rate"],
    "sum": ["count", "sum", "avg", "rate"],
    "rate": ["sum", "rate", "count"],
    "average": ["avg", "min", "max", "last", "count", "sum"],
    "min": ["min", "max", "last", "count"],
    "max": ["max", "min", "last"],
    "percentile": ["percentile", "p50", "p99", "min", "max", "avg"],
    "unique": ["unique", "count"],
}
TAG_VALUES = {"endpoint": ["/a", "/b", "/c"], "status": ["200", "500"], "region": ["eu", "us"]}


@st.composite
def points(draw: Any) -> list[dict[str, Any]]:
    out = []
    for _ in range(draw(st.integers(min_value=0, max_value=60))):
        short = draw(st.sampled_from(sorted(TYPES)))
        tags = {k: draw(st.sampled_from(v)) for k, v in TAG_VALUES.items() if draw(st.booleans())}
        age = draw(
            st.one_of(st.floats(min_value=0, max_value=400), st.floats(min_value=0, max_value=3 * 3600))
        )
        if short == "u":
            value: Any = draw(st.sampled_from(["u1", "u2", "u3", "u4", 5, 6]))
        else:
            value = draw(st.integers(min_value=-50, max_value=500)) / 4
        out.append(
            {"name": f"m.{short}", "type": TYPES[short], "value": value, "tags": tags, "timestamp": NOW - age}
        )
    return out


@st.composite
def queries(draw: Any) -> dict[str, Any]:
    short = draw(st.sampled_from(sorted(TYPES)))
    q: dict[str, Any] = {"metrics": [f"m.{short}"], "aggregation": draw(st.sampled_from(AGGS[TYPES[short]]))}
    if draw(st.booleans()):
        q["group_by"] = draw(st.lists(st.sampled_from(sorted(TAG_VALUES)), max_size=2, unique=True))
    filters: dict[str, Any] = {}
    for key, values in TAG_VALUES.items():
        kind = draw(st.sampled_from(["none", "none", "eq", "list", "ne", "not_in", "prefix", "regex"]))
        value = draw(st.sampled_from(values))
        if kind == "eq":
            filters[f"tags.{key}"] = value
        elif kind == "list":
            filters[f"tags.{key}"] = [value, values[0]]
        elif kind == "ne":
            filters[f"tags.{key}"] = {"ne": value}
        elif kind == "not_in":
            filters[f"tags.{key}"] = {"not_in": [value]}
        elif kind == "prefix":
            filters[f"tags.{key}"] = {"prefix": value[:1]}
        elif kind == "regex":
            filters[f"tags.{key}"] = {"regex": f"{value[:1]}.*"}
    if filters:
        q["filters"] = filters
    if draw(st.booleans()):
        window = draw(st.sampled_from([1, 7, 60, 90, 300, 1800, 3600]))
        q["window"] = f"{window}s"
    else:
        window = draw(st.sampled_from([60, 300, 600, 3600]))
        q["window"] = f"{window}s"
        span = draw(st.integers(min_value=1, max_value=12)) * window
        end = NOW - draw(st.sampled_from([0, 0, 30, 4000]))
        q["start_time"], q["end_time"] = end - span, end
    return q


def brute_force(raw: list[dict[str, Any]], q: dict[str, Any]) -> dict[tuple, Any]:
    """{(group values..., bucket start or None): value} straight from the points."""
    parsed = parse_query(q)
    name = q["metrics"][0]
    window = parsed.window_ms // 1000
    if parsed.is_range:
        first = align(parsed.start, window)
        edges = None
    else:
        plan = plan_trailing(window, NOW, default_tiers())
        lo = plan.slot_starts[0]
        edges = (lo, align(NOW, 1) + 1)
    cells: dict[tuple, list[tuple[float, Any]]] = {}
    for p in raw:
        if p["name"] != name or not parsed.matches(tuple(sorted(p["tags"].items()))):
            continue
        ts = p["timestamp"]
        if edges is not None:
            if not (edges[0] <= math.floor(ts) < edges[1]):
                continue
            bucket = None
        else:
            bucket = align(ts, window)
            if bucket < first or bucket >= parsed.end:
                continue
        key = (*(p["tags"].get(k) for k in parsed.group_by), bucket)
        cells.setdefault(key, []).append((ts, p["value"]))
    agg = parsed.aggregation
    out = {}
    for key, pts in cells.items():
        values = [v for _, v in pts]
        if agg == "count":
            out[key] = float(len(values))
        elif agg == "sum":
            out[key] = math.fsum(values)
        elif agg == "avg":
            out[key] = math.fsum(values) / len(values)
        elif agg == "rate":
            out[key] = math.fsum(values) / window
        elif agg in ("min", "max"):
            out[key] = (min if agg == "min" else max)(values)
        elif agg == "last":
            out[key] = max(pts)[1]
        elif agg == "unique":
            out[key] = len(
                {str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in values}
            )
        else:
            wanted = [PERCENTILE_NAMES[agg]] if agg in PERCENTILE_NAMES else [50.0, 95.0, 99.0]
            exact = {percentile_key(p): float(np.quantile(values, p / 100, method="lower")) for p in wanted}
            out[key] = exact if agg == "percentile" else exact[agg]
    return out


def close(got: Any, want: Any, agg: str) -> bool:
    if isinstance(want, dict):
        return set(got) == set(want) and all(close(got[k], want[k], "p") for k in want)
    if agg.startswith("p"):
        return abs(got - want) <= 0.01 * abs(want) + 1e-9
    if agg == "unique":
        return abs(got - want) <= 0.02 * want
    return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)


@given(points(), st.lists(queries(), min_size=1, max_size=4))
def test_engine_answers_like_brute_force(raw: list[dict[str, Any]], qs: list[dict[str, Any]]) -> None:
    engine = Engine(clock=ManualClock(NOW))

    async def run() -> None:
        result = await engine.ingest(raw)
        assert result.accepted == len(raw), result.rejected
        for q in qs:
            expected = brute_force(raw, q)
            answer = await engine.query(q)
            got: dict[tuple, Any] = {}
            for row in answer.results:
                group = tuple(row.group.get(k) for k in q.get("group_by", []))
                if row.points is not None:
                    for point in row.points:
                        got[(*group, point.timestamp)] = point.value
                elif row.value is not None:
                    got[(*group, None)] = row.value
            assert set(got) == set(expected), (q, got, expected)
            agg = parse_query(q).aggregation
            for key, want in expected.items():
                assert close(got[key], want, agg), (q, key, got[key], want)

    asyncio.run(run())
