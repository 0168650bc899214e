"""The metric model: types, what each keeps per bucket, and validation of incoming points.

`parse_points` is the ingest hot path. It turns the seed's JSON point dicts into a columnar
`PointBatch` plus a list of rejections, collecting every problem of a point, not just the first.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from enum import StrEnum
from typing import Any

import attrs

from rtanalytics.core.durations import parse_duration, parse_timestamp
from rtanalytics.core.errors import Problem

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$"
TAG_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
MAX_TAGS = 32
MAX_TAG_VALUE_CHARS = 256
MAX_FUTURE_SECONDS = 600.0
DEFAULT_WINDOW_MS = 60_000

_NAME_RE = re.compile(NAME_PATTERN)
_TAG_KEY_RE = re.compile(TAG_KEY_PATTERN)

Tags = tuple[tuple[str, str], ...]


class MetricType(StrEnum):
    COUNT = "count"
    SUM = "sum"
    AVERAGE = "average"
    MIN = "min"
    MAX = "max"
    PERCENTILE = "percentile"
    RATE = "rate"
    UNIQUE = "unique"


class StateKind(StrEnum):
    """Which fields a bucket keeps; several metric types share one kind."""

    SUM = "sum"  # count, sum
    FULL = "full"  # count, sum, min, max, last (+ its timestamp)
    QUANTILE = "quantile"  # FULL + a quantile sketch
    DISTINCT = "distinct"  # count + a distinct-count sketch


KIND_OF_TYPE: dict[MetricType, StateKind] = {
    MetricType.COUNT: StateKind.SUM,
    MetricType.SUM: StateKind.SUM,
    MetricType.RATE: StateKind.SUM,
    MetricType.AVERAGE: StateKind.FULL,
    MetricType.MIN: StateKind.FULL,
    MetricType.MAX: StateKind.FULL,
    MetricType.PERCENTILE: StateKind.QUANTILE,
    MetricType.UNIQUE: StateKind.DISTINCT,
}

_TYPES_BY_VALUE = {t.value: t for t in MetricType}


@attrs.frozen
class SeriesKey:
    """A series: one metric name with one exact set of tags, inside one tenant."""

    tenant: str
    name: str
    tags: Tags


@attrs.frozen
class MetricInfo:
    """What the service knows of a metric name: its type (fixed by the first point) and window."""

    name: str
    type: MetricType
    window_ms: int = DEFAULT_WINDOW_MS


@attrs.define(slots=True)
class PointBatch:
    """Validated points, column by column; `index` is each point's position in the request."""

    index: list[int] = attrs.field(factory=list)
    names: list[str] = attrs.field(factory=list)
    types: list[MetricType] = attrs.field(factory=list)
    tags: list[Tags] = attrs.field(factory=list)
    timestamps: list[float] = attrs.field(factory=list)
    values: list[Any] = attrs.field(factory=list)  # float, or str for `unique`
    windows: dict[str, int] = attrs.field(factory=dict)  # name -> window_ms given in this batch

    def __len__(self) -> int:
        return len(self.names)

    def select(self, keep: Sequence[bool]) -> PointBatch:
        """The points whose flag is true, in order."""
        out = PointBatch(windows=self.windows)
        for i, ok in enumerate(keep):
            if ok:
                out.index.append(self.index[i])
                out.names.append(self.names[i])
                out.types.append(self.types[i])
                out.tags.append(self.tags[i])
                out.timestamps.append(self.timestamps[i])
                out.values.append(self.values[i])
        return out


@attrs.frozen
class Rejection:
    """A point that was not accepted, with every reason."""

    index: int
    problems: tuple[Problem, ...]

    @property
    def message(self) -> str:
        return "; ".join(str(p) for p in self.problems)


def unique_identity(value: object) -> str:
    """The canonical text of a `unique` value, so 42, 42.0 and "42" count as one thing."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _ValidatedCache:
    """Names and tag sets already seen valid; bounded so hostile input cannot grow it forever."""

    __slots__ = ("names", "tags")

    LIMIT = 200_000

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.tags: dict[tuple[tuple[str, Any], ...], Tags] = {}

    def trim(self) -> None:
        if len(self.names) > self.LIMIT:
            self.names.clear()
        if len(self.tags) > self.LIMIT:
            self.tags.clear()


_CACHE = _ValidatedCache()


def _check_tags(raw: object, field: str, problems: list[Problem]) -> Tags:
    if not isinstance(raw, dict):
        problems.append(Problem(field, f"must be an object of string to string, got {type(raw).__name__}"))
        return ()
    items = tuple(sorted(raw.items()))
    cached = _CACHE.tags.get(items)
    if cached is not None:
        return cached
    start = len(problems)
    if len(items) > MAX_TAGS:
        problems.append(Problem(field, f"has {len(items)} tags, at most {MAX_TAGS} are allowed"))
    for key, value in items:
        if not isinstance(key, str) or _TAG_KEY_RE.match(key) is None:
            problems.append(Problem(f"{field}.{key}", f"tag key must match {TAG_KEY_PATTERN}"))
        if not isinstance(value, str):
            problems.append(
                Problem(f"{field}.{key}", f"tag value must be a string, got {type(value).__name__}")
            )
        elif len(value) > MAX_TAG_VALUE_CHARS:
            problems.append(
                Problem(
                    f"{field}.{key}", f"tag value has {len(value)} characters, at most {MAX_TAG_VALUE_CHARS}"
                )
            )
    if len(problems) > start:
        return ()
    _CACHE.tags[items] = items
    return items


def parse_points(raw_points: Sequence[Any], now: float) -> tuple[PointBatch, list[Rejection]]:
    """Validate the seed's point dicts; the valid ones come back as a batch, the rest as rejections.

    Type conflicts and retention are checked later, against what the store already holds.
    """
    batch = PointBatch()
    rejected: list[Rejection] = []
    names_ok = _CACHE.names
    tags_cache = _CACHE.tags
    latest = now + MAX_FUTURE_SECONDS
    types_by_value = _TYPES_BY_VALUE
    for i, point in enumerate(raw_points):
        problems: list[Problem] = []
        field = f"metrics[{i}]"
        if not isinstance(point, dict):
            rejected.append(Rejection(i, (Problem(field, "must be an object"),)))
            continue
        name = point.get("name")
        if name not in names_ok:
            if not isinstance(name, str) or _NAME_RE.match(name) is None:
                problems.append(Problem(f"{field}.name", f"is required and must match {NAME_PATTERN}"))
            else:
                names_ok.add(name)
        mtype = types_by_value.get(point.get("type"))  # type: ignore[arg-type]
        if mtype is None:
            problems.append(Problem(f"{field}.type", f"must be one of {', '.join(types_by_value)}"))
        value = point.get("value")
        if value is None and mtype is MetricType.COUNT:
            value = 1.0
        elif mtype is MetricType.UNIQUE:
            if isinstance(value, str) and value:
                pass
            elif type(value) in (int, float) and math.isfinite(value):  # type: ignore[arg-type]
                value = unique_identity(value)
            else:
                problems.append(Problem(f"{field}.value", "must be a non-empty string or a finite number"))
        elif type(value) is float:
            if not math.isfinite(value):
                problems.append(Problem(f"{field}.value", "must be a finite number, not NaN or Infinity"))
        elif type(value) is int:
            value = float(value)
            if not math.isfinite(value):
                problems.append(Problem(f"{field}.value", "must be a finite number"))
        else:
            problems.append(Problem(f"{field}.value", f"must be a finite number, got {type(value).__name__}"))
        raw_tags = point.get("tags")
        if raw_tags is None:
            tags: Tags = ()
        elif type(raw_tags) is dict:
            tags = tags_cache.get(tuple(sorted(raw_tags.items())))  # type: ignore[assignment]
            if tags is None:
                tags = _check_tags(raw_tags, f"{field}.tags", problems)
        else:
            tags = _check_tags(raw_tags, f"{field}.tags", problems)
        raw_ts = point.get("timestamp")
        if raw_ts is None:
            ts = now
        elif type(raw_ts) is float or type(raw_ts) is int:
            ts = float(raw_ts)
            if not math.isfinite(ts):
                problems.append(Problem(f"{field}.timestamp", "must be a finite number of epoch seconds"))
        else:
            try:
                ts = parse_timestamp(raw_ts)
            except ValueError as exc:
                problems.append(Problem(f"{field}.timestamp", str(exc)))
                ts = now
        if ts > latest:
            problems.append(
                Problem(
                    f"{field}.timestamp",
                    f"is {ts - now:.0f}s in the future; at most {MAX_FUTURE_SECONDS:.0f}s is accepted",
                )
            )
        raw_window = point.get("window")
        if raw_window is not None:
            try:
                window_ms = parse_duration(raw_window)
                if window_ms % 1000:
                    problems.append(Problem(f"{field}.window", "must be a whole number of seconds"))
                elif not problems:
                    batch.windows[name] = window_ms  # type: ignore[index]
            except ValueError as exc:
                problems.append(Problem(f"{field}.window", str(exc)))
        if problems:
            rejected.append(Rejection(i, tuple(problems)))
            continue
        batch.index.append(i)
        batch.names.append(name)  # type: ignore[arg-type]
        batch.types.append(mtype)  # type: ignore[arg-type]
        batch.tags.append(tags)
        batch.timestamps.append(ts)
        batch.values.append(value)
    _CACHE.trim()
    return batch, rejected
