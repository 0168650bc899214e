"""The query model and its validation: what `/api/v1/query`, `current` and widgets ask for."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from rtanalytics.core.durations import parse_duration, parse_timestamp
from rtanalytics.core.errors import Problem, ValidationError
from rtanalytics.core.metrics import NAME_PATTERN, TAG_KEY_PATTERN, Tags
from rtanalytics.core.states import AGGREGATIONS, canonical_aggregation

_NAME_RE = re.compile(NAME_PATTERN)
_TAG_KEY_RE = re.compile(TAG_KEY_PATTERN)
FILTER_OPERATORS = ("eq", "ne", "in", "not_in", "prefix", "regex")
QUERY_FIELDS = (
    "metrics",
    "aggregation",
    "percentiles",
    "window",
    "start_time",
    "end_time",
    "group_by",
    "filters",
    "limit",
)
MAX_METRICS = 100
MAX_REGEX_CHARS = 1_000


@attrs.frozen
class TagFilter:
    """One condition on one tag; a series without the tag matches only `ne` and `not_in`."""

    key: str
    op: str
    value: str | tuple[str, ...]
    pattern: re.Pattern[str] | None = attrs.field(default=None, eq=False)

    def matches(self, tags: Mapping[str, str]) -> bool:
        actual = tags.get(self.key)
        op = self.op
        if op == "eq":
            return actual == self.value
        if op == "ne":
            return actual != self.value
        if op == "in":
            return actual in self.value
        if op == "not_in":
            return actual not in self.value
        if actual is None:
            return False
        if op == "prefix":
            return actual.startswith(self.value)
        assert self.pattern is not None
        return self.pattern.fullmatch(actual) is not None


@attrs.frozen
class Query:
    """A validated query.

    `window_ms` None means each metric's own window; `end` None with a `start` means "until now".
    """

    metrics: tuple[str, ...]
    aggregation: str | None = None
    percentiles: tuple[float, ...] | None = None
    window_ms: int | None = None
    start: float | None = None
    end: float | None = None
    group_by: tuple[str, ...] = ()
    filters: tuple[TagFilter, ...] = ()
    limit: int | None = None

    @property
    def is_range(self) -> bool:
        return self.start is not None

    def matches(self, tags: Tags) -> bool:
        if not self.filters:
            return True
        as_dict = dict(tags)
        return all(f.matches(as_dict) for f in self.filters)


def _string_list(value: Any, field: str, problems: list[Problem]) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        problems.append(Problem(field, "must be a list of strings"))
        return ()
    return tuple(value)


def _parse_filter(key: str, spec: Any, problems: list[Problem], prefix: str = "") -> list[TagFilter]:
    field = f"{prefix}filters.{key}"
    if not key.startswith("tags.") or _TAG_KEY_RE.match(key[5:]) is None:
        problems.append(Problem(field, "filter keys are 'tags.<tag key>'"))
        return []
    tag = key[5:]
    if isinstance(spec, str):
        return [TagFilter(tag, "eq", spec)]
    if isinstance(spec, list):
        return [TagFilter(tag, "in", _string_list(spec, field, problems))]
    if not isinstance(spec, dict) or not spec:
        problems.append(Problem(field, "must be a string, a list of strings, or an object of operators"))
        return []
    out = []
    for op, operand in spec.items():
        if op not in FILTER_OPERATORS:
            problems.append(
                Problem(f"{field}.{op}", f"unknown operator; use one of {', '.join(FILTER_OPERATORS)}")
            )
        elif op in ("in", "not_in"):
            out.append(TagFilter(tag, op, _string_list(operand, f"{field}.{op}", problems)))
        elif not isinstance(operand, str):
            problems.append(Problem(f"{field}.{op}", "must be a string"))
        elif op == "regex":
            if len(operand) > MAX_REGEX_CHARS:
                problems.append(
                    Problem(f"{field}.regex", f"is {len(operand)} characters, at most {MAX_REGEX_CHARS}")
                )
                continue
            try:
                out.append(TagFilter(tag, op, operand, re.compile(operand)))
            except re.error as exc:
                problems.append(Problem(f"{field}.regex", f"is not a valid regular expression: {exc}"))
        else:
            out.append(TagFilter(tag, op, operand))
    return out


def parse_query(body: Any, *, prefix: str = "") -> Query:
    """Validate a query body, reporting every problem at once (fields prefixed by `prefix`)."""
    problems: list[Problem] = []
    if not isinstance(body, dict):
        raise ValidationError.of([Problem(prefix.rstrip(".") or "body", "must be a JSON object")])
    for key in body:
        if key not in QUERY_FIELDS:
            problems.append(Problem(f"{prefix}{key}", f"unknown field; known: {', '.join(QUERY_FIELDS)}"))
    metrics = body.get("metrics")
    names: tuple[str, ...] = ()
    if isinstance(metrics, str):
        metrics = [metrics]
    if not isinstance(metrics, list) or not metrics:
        problems.append(Problem(f"{prefix}metrics", "is required: a non-empty list of metric names"))
    elif len(metrics) > MAX_METRICS:
        problems.append(Problem(f"{prefix}metrics", f"has {len(metrics)} names, at most {MAX_METRICS}"))
    else:
        for i, name in enumerate(metrics):
            if not isinstance(name, str) or _NAME_RE.match(name) is None:
                problems.append(Problem(f"{prefix}metrics[{i}]", f"must match {NAME_PATTERN}"))
        names = tuple(m for m in metrics if isinstance(m, str))
    aggregation = body.get("aggregation")
    if aggregation is not None and aggregation not in AGGREGATIONS:
        problems.append(Problem(f"{prefix}aggregation", f"must be one of {', '.join(AGGREGATIONS)}"))
        aggregation = None
    percentiles = None
    if body.get("percentiles") is not None:
        raw = body["percentiles"]
        if aggregation not in (None, "percentile"):
            problems.append(Problem(f"{prefix}percentiles", "applies only with aggregation 'percentile'"))
        if (
            not isinstance(raw, list)
            or not raw
            or not all(type(p) in (int, float) and 0 < p <= 100 and math.isfinite(p) for p in raw)
        ):
            problems.append(
                Problem(f"{prefix}percentiles", "must be a non-empty list of numbers in (0, 100]")
            )
        else:
            percentiles = tuple(float(p) for p in raw)
    window_ms = None
    if body.get("window") is not None:
        try:
            window_ms = parse_duration(body["window"])
            if window_ms % 1000:
                problems.append(
                    Problem(
                        f"{prefix}window", "must be a whole number of seconds (the finest resolution is 1s)"
                    )
                )
        except ValueError as exc:
            problems.append(Problem(f"{prefix}window", str(exc)))
    start = end = None
    for field in ("start_time", "end_time"):
        if body.get(field) is not None:
            try:
                value = parse_timestamp(body[field])
            except ValueError as exc:
                problems.append(Problem(f"{prefix}{field}", str(exc)))
                continue
            if field == "start_time":
                start = value
            else:
                end = value
    if end is not None and start is None and body.get("start_time") is None:
        problems.append(Problem(f"{prefix}start_time", "is required when end_time is given"))
    if start is not None and end is not None:
        if end <= start:
            problems.append(Problem(f"{prefix}end_time", "must be after start_time"))
        elif window_ms is not None and window_ms / 1000 > end - start:
            problems.append(
                Problem(f"{prefix}window", f"{body['window']} is larger than the range ({end - start:g}s)")
            )
    group_by: tuple[str, ...] = ()
    if body.get("group_by") is not None:
        group_by = _string_list(body["group_by"], f"{prefix}group_by", problems)
        for key in group_by:
            if _TAG_KEY_RE.match(key) is None:
                problems.append(Problem(f"{prefix}group_by", f"{key!r} is not a tag key ({TAG_KEY_PATTERN})"))
    filters: list[TagFilter] = []
    raw_filters = body.get("filters")
    if raw_filters is not None:
        if not isinstance(raw_filters, dict):
            problems.append(Problem(f"{prefix}filters", 'must be an object like {"tags.endpoint": "/x"}'))
        else:
            for key, spec in raw_filters.items():
                filters.extend(_parse_filter(key, spec, problems, prefix))
    limit = body.get("limit")
    if limit is not None and (type(limit) is not int or limit < 1):
        problems.append(Problem(f"{prefix}limit", "must be a positive integer"))
        limit = None
    if problems:
        raise ValidationError.of(problems)
    return Query(
        metrics=names,
        aggregation=canonical_aggregation(aggregation) if aggregation else None,
        percentiles=percentiles,
        window_ms=window_ms,
        start=start,
        end=end,
        group_by=group_by,
        filters=tuple(filters),
        limit=limit,
    )
