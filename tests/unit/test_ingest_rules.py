"""Ingest rules of SPEC §2: validation, type conflicts, time limits, tenancy, series limits, retention."""

from __future__ import annotations

import pytest

from rtanalytics import Engine
from rtanalytics.adapters.clock import ManualClock
from rtanalytics.config import Config
from rtanalytics.core.errors import NotFoundError, QueryTooLargeError, ValidationError
from rtanalytics.core.metrics import parse_points

NOW = 1_700_000_000.0


def fields(raw: list) -> list[list[str]]:
    _, rejected = parse_points(raw, NOW)
    return [[p.field for p in r.problems] for r in rejected]


@pytest.mark.parametrize(
    ("point", "field", "words"),
    [
        ({"name": "bad name", "type": "count"}, "metrics[0].name", "must match"),
        ({"name": "9lives", "type": "count"}, "metrics[0].name", "must match"),
        ({"name": "x" * 201, "type": "count"}, "metrics[0].name", "must match"),
        ({"type": "count"}, "metrics[0].name", "required"),
        ({"name": "a", "type": "histogram"}, "metrics[0].type", "one of"),
        ({"name": "a", "type": "sum", "value": "12"}, "metrics[0].value", "finite number"),
        ({"name": "a", "type": "sum", "value": float("nan")}, "metrics[0].value", "NaN"),
        ({"name": "a", "type": "sum", "value": float("inf")}, "metrics[0].value", "NaN or Infinity"),
        ({"name": "a", "type": "sum", "value": True}, "metrics[0].value", "finite number"),
        ({"name": "a", "type": "sum"}, "metrics[0].value", "finite number"),
        ({"name": "a", "type": "unique", "value": ""}, "metrics[0].value", "non-empty"),
        ({"name": "a", "type": "count", "tags": {"k": 1}}, "metrics[0].tags.k", "must be a string"),
        ({"name": "a", "type": "count", "tags": {"1k": "v"}}, "metrics[0].tags.1k", "tag key"),
        ({"name": "a", "type": "count", "tags": {"k": "v" * 257}}, "metrics[0].tags.k", "at most 256"),
        (
            {"name": "a", "type": "count", "tags": {f"k{i}": "v" for i in range(33)}},
            "metrics[0].tags",
            "at most 32",
        ),
        ({"name": "a", "type": "count", "tags": ["k"]}, "metrics[0].tags", "object"),
        ({"name": "a", "type": "count", "timestamp": NOW + 601}, "metrics[0].timestamp", "future"),
        ({"name": "a", "type": "count", "timestamp": "soon"}, "metrics[0].timestamp", "RFC 3339"),
        ({"name": "a", "type": "count", "window": "5 minutes"}, "metrics[0].window", "duration"),
        ({"name": "a", "type": "count", "window": "1500ms"}, "metrics[0].window", "whole number of seconds"),
    ],
)
def test_each_bad_point_names_its_field(point: dict, field: str, words: str) -> None:
    _, rejected = parse_points([point], NOW)
    assert len(rejected) == 1
    assert any(p.field == field and words in p.message for p in rejected[0].problems), rejected


def test_every_problem_of_a_point_is_reported() -> None:
    assert fields([{"name": "bad name", "type": "nope", "value": "x"}]) == [
        ["metrics[0].name", "metrics[0].type", "metrics[0].value"]
    ]


def test_defaults_count_value_and_timestamp() -> None:
    batch, rejected = parse_points([{"name": "a", "type": "count"}], NOW)
    assert not rejected
    assert batch.values == [1.0] and batch.timestamps == [NOW]


def test_timestamps_up_to_ten_minutes_ahead_are_accepted() -> None:
    batch, rejected = parse_points([{"name": "a", "type": "count", "timestamp": NOW + 599}], NOW)
    assert len(batch) == 1 and not rejected


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(NOW)


@pytest.fixture
def engine(clock: ManualClock) -> Engine:
    return Engine(clock=clock)


async def test_mixed_batch_keeps_the_good_points(engine: Engine) -> None:
    result = await engine.ingest(
        [
            {"name": "ok", "type": "sum", "value": 2},
            {"name": "ok", "type": "sum", "value": "x"},
            {"name": "ok", "type": "sum", "value": 3},
        ]
    )
    assert result.accepted == 2 and [r.index for r in result.rejected] == [1]
    answer = await engine.current("ok")
    assert answer.results[0].value == 5


async def test_first_type_wins_and_later_types_are_refused(engine: Engine) -> None:
    result = await engine.ingest([{"name": "m", "type": "count"}, {"name": "m", "type": "sum", "value": 4}])
    assert result.accepted == 1
    assert "of type count" in result.rejected[0].message
    again = await engine.ingest([{"name": "m", "type": "average", "value": 4}])
    assert again.accepted == 0 and again.rejected[0].problems[0].field == "metrics[0].type"


async def test_late_points_update_their_buckets_in_every_tier(engine: Engine) -> None:
    late = NOW - 2 * 3600 - 30  # older than the raw tier, inside the fine and coarse tiers
    result = await engine.ingest([{"name": "late", "type": "sum", "value": 7, "timestamp": late}])
    assert result.accepted == 1
    answer = await engine.query(
        {"metrics": ["late"], "window": "1m", "start_time": late - 600, "end_time": late + 600}
    )
    assert [(p.timestamp, p.value) for p in answer.results[0].points] == [(late - late % 60, 7.0)]
    hourly = await engine.query(
        {"metrics": ["late"], "window": "1h", "start_time": NOW - 86_400, "end_time": NOW}
    )
    assert sum(p.value for p in hourly.results[0].points) == 7.0


async def test_points_older_than_every_retention_are_refused(engine: Engine) -> None:
    result = await engine.ingest([{"name": "old", "type": "sum", "value": 1, "timestamp": NOW - 31 * 86_400}])
    assert result.accepted == 0 and "retention" in result.rejected[0].message


async def test_tenants_see_only_their_own_metrics(engine: Engine) -> None:
    await engine.ingest([{"name": "secret", "type": "count"}], tenant="a")
    assert (await engine.current("secret", tenant="a")).results[0].value == 1
    with pytest.raises(NotFoundError):
        await engine.current("secret", tenant="b")
    other = await engine.query({"metrics": ["secret"]}, tenant="b")
    assert other.results == () and other.meta.unknown_metrics == ("secret",)


async def test_series_limit_refuses_new_series_and_keeps_old_ones(clock: ManualClock) -> None:
    engine = Engine(Config(max_series_per_tenant=2), clock=clock)
    first = await engine.ingest([{"name": "m", "type": "count", "tags": {"k": v}} for v in "ab"])
    assert first.accepted == 2
    more = await engine.ingest([{"name": "m", "type": "count", "tags": {"k": v}} for v in "abc"])
    assert more.accepted == 2 and "limit of 2 active series" in more.rejected[0].message
    assert (await engine.current("m")).results[0].value == 4
    assert (
        await engine.ingest([{"name": "m", "type": "count", "tags": {"k": "c"}}], tenant="other")
    ).accepted == 1


async def test_unsupported_aggregation_names_metric_and_type(engine: Engine) -> None:
    await engine.ingest([{"name": "hits", "type": "count"}])
    with pytest.raises(ValidationError, match="'p99' is not available for 'hits' \\(type count\\)"):
        await engine.query({"metrics": ["hits"], "aggregation": "p99"})


async def test_query_size_limit_names_both_numbers(clock: ManualClock) -> None:
    engine = Engine(Config(max_query_size=100), clock=clock)
    await engine.ingest([{"name": "m", "type": "count", "tags": {"k": str(i)}} for i in range(20)])
    with pytest.raises(QueryTooLargeError, match=r"spans 1441 buckets .* MAX_QUERY_SIZE=100"):
        await engine.query({"metrics": ["m"], "window": "1m", "start_time": NOW - 86_400, "end_time": NOW})
    with pytest.raises(QueryTooLargeError, match=r"11 buckets x 20 groups = 220 .* MAX_QUERY_SIZE=100"):
        await engine.query(
            {"metrics": ["m"], "window": "1m", "start_time": NOW - 599, "end_time": NOW, "group_by": ["k"]}
        )


async def test_limit_keeps_the_largest_groups(engine: Engine) -> None:
    await engine.ingest([{"name": "m", "type": "sum", "value": i, "tags": {"k": str(i)}} for i in range(10)])
    answer = await engine.query({"metrics": ["m"], "group_by": ["k"], "limit": 3})
    assert sorted(r.value for r in answer.results) == [7, 8, 9] and answer.meta.truncated


async def test_a_series_without_the_group_tag_falls_in_the_null_group(engine: Engine) -> None:
    await engine.ingest(
        [
            {"name": "m", "type": "sum", "value": 1, "tags": {"k": "x"}},
            {"name": "m", "type": "sum", "value": 2},
        ]
    )
    answer = await engine.query({"metrics": ["m"], "group_by": ["k"]})
    assert {(r.group["k"], r.value) for r in answer.results} == {("x", 1.0), (None, 2.0)}


async def test_metric_window_sets_the_current_window(engine: Engine, clock: ManualClock) -> None:
    await engine.ingest([{"name": "cpu", "type": "average", "value": 10, "window": "5m"}])
    clock.advance(120)
    await engine.ingest([{"name": "cpu", "type": "average", "value": 20}])
    answer = await engine.current("cpu")
    assert answer.results[0].value == 15 and answer.results[0].window_ms == 300_000


async def test_expired_series_are_forgotten_and_memory_stays_flat(clock: ManualClock) -> None:
    engine = Engine(Config(coarse_retention_s=2 * 3600), clock=clock)
    await engine.ingest([{"name": "m", "type": "count", "tags": {"k": str(i)}} for i in range(100)])
    stats = await engine.store.stats()
    assert stats.series_by_tenant["default"] == 100
    before = engine.store.nbytes()
    clock.advance(3 * 3600)
    assert await engine.tick() == 100
    assert (await engine.store.stats()).series_by_tenant["default"] == 0
    await engine.ingest([{"name": "m", "type": "count", "tags": {"k": str(i)}} for i in range(100, 200)])
    assert engine.store.nbytes() == before  # freed rows are reused


async def test_the_memory_budget_refuses_new_series_not_the_process(clock: ManualClock) -> None:
    engine = Engine(Config(memory_budget_mb=16), clock=clock)  # room for well under 1,000 series
    points = [{"name": "m", "type": "average", "value": 1.0, "tags": {"k": str(i)}} for i in range(1_000)]
    result = await engine.ingest(points)
    assert 0 < result.accepted < 1_000
    assert "budget of 16 MiB is full" in result.rejected[0].message
    assert engine.store.nbytes() <= 16 * 2**20
    again = await engine.ingest(points[:10])  # series it holds still take points
    assert again.accepted == 10
