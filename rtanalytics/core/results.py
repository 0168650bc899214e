"""What ingest and queries answer, as values; wire formats live in the HTTP converter."""

from __future__ import annotations

from typing import Any, NamedTuple

import attrs

from rtanalytics.core.metrics import MetricInfo, Rejection, Tags


@attrs.frozen
class IngestResult:
    accepted: int
    rejected: tuple[Rejection, ...]


# Rows and points are NamedTuples, not attrs classes: a group_by answer builds thousands of them
# per query, and a frozen attrs instance costs ~1 us to build against ~0.5 us for a tuple
# (bench/query_http.py, group_by over 1,000 series).
class SeriesPoint(NamedTuple):
    timestamp: float
    value: Any


class ResultRow(NamedTuple):
    """One metric x group: a single `value` (trailing window) or `points` (time range)."""

    metric: str
    group: dict[str, str | None]
    aggregation: str
    value: Any = None
    points: tuple[SeriesPoint, ...] | None = None
    window_ms: int = 60_000


@attrs.frozen
class QueryMeta:
    resolution_ms: int
    series: int
    points: int
    took_ms: float
    unknown_metrics: tuple[str, ...] = ()
    truncated: bool = False
    omitted_buckets: int = 0


@attrs.frozen
class QueryResult:
    results: tuple[ResultRow, ...]
    meta: QueryMeta


@attrs.frozen
class MetricSnapshot:
    """Every series of one metric now: its value over the metric's window (default aggregation;
    None without data) and the count and sum of every point it ever took (for counters)."""

    info: MetricInfo
    aggregation: str
    tags: tuple[Tags, ...]
    values: list[Any]
    counts: list[float]
    sums: list[float]
