"""What ingest and queries answer, as values; wire formats live in the HTTP converter."""

from __future__ import annotations

from typing import Any

import attrs

from rtanalytics.core.metrics import Rejection


@attrs.frozen
class IngestResult:
    accepted: int
    rejected: tuple[Rejection, ...]


@attrs.frozen
class SeriesPoint:
    timestamp: float
    value: Any


@attrs.frozen
class ResultRow:
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
