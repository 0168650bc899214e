"""Dashboards: a name, a refresh interval and widgets on a 12-column grid, each with a query
validated exactly like /api/v1/query; every problem reported at once."""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from typing import Any

import attrs

from rtanalytics.core.errors import Problem, ValidationError
from rtanalytics.core.query import Query, parse_query

WIDGET_TYPES = ("line_chart", "area_chart", "bar_chart", "gauge", "stat", "table", "heatmap")
GRID_COLUMNS = 12
DASHBOARD_FIELDS = ("name", "description", "refresh_interval", "widgets")
WIDGET_FIELDS = ("id", "type", "title", "metric_query", "position", "visualization_config")


@attrs.frozen
class Widget:
    id: str
    type: str
    query: Query
    x: int
    y: int
    width: int
    height: int


@attrs.frozen
class DashboardSpec:
    """A validated dashboard; `definition` is its canonical JSON form."""

    name: str
    refresh_interval: int
    widgets: tuple[Widget, ...]
    definition: Mapping[str, Any] = attrs.field(eq=False)


@attrs.frozen
class Dashboard:
    id: str
    tenant: str
    spec: DashboardSpec
    version: int
    created_at: float
    updated_at: float


def _int(raw: Any, field: str, minimum: int, problems: list[Problem]) -> int | None:
    if type(raw) is not int or raw < minimum:
        problems.append(Problem(field, f"must be an integer of at least {minimum}"))
        return None
    return raw


def _position(raw: Any, field: str, problems: list[Problem]) -> tuple[int, int, int, int] | None:
    if not isinstance(raw, dict):
        problems.append(Problem(field, 'is required: {"x", "y", "width", "height"} on a 12-column grid'))
        return None
    x = _int(raw.get("x"), f"{field}.x", 0, problems)
    y = _int(raw.get("y"), f"{field}.y", 0, problems)
    width = _int(raw.get("width"), f"{field}.width", 1, problems)
    height = _int(raw.get("height"), f"{field}.height", 1, problems)
    if None in (x, y, width, height):
        return None
    assert x is not None and y is not None and width is not None and height is not None
    if x + width > GRID_COLUMNS:
        problems.append(Problem(field, f"x + width is {x + width}, past the {GRID_COLUMNS}-column grid"))
        return None
    return x, y, width, height


def _visualization(raw: Any, field: str, problems: list[Problem]) -> None:
    if not isinstance(raw, dict):
        problems.append(Problem(field, "must be an object"))
        return
    for key in ("min", "max"):
        if key in raw and (type(raw[key]) not in (int, float) or not math.isfinite(raw[key])):
            problems.append(Problem(f"{field}.{key}", "must be a finite number"))
    thresholds = raw.get("thresholds")
    if thresholds is None:
        return
    if not isinstance(thresholds, list):
        problems.append(Problem(f"{field}.thresholds", 'must be a list of {"value", "color"}'))
        return
    values = []
    for i, t in enumerate(thresholds):
        if (
            not isinstance(t, dict)
            or type(t.get("value")) not in (int, float)
            or not isinstance(t.get("color"), str)
        ):
            problems.append(Problem(f"{field}.thresholds[{i}]", 'must be {"value": number, "color": string}'))
            return
        values.append(t["value"])
    if any(b <= a for a, b in itertools.pairwise(values)):
        problems.append(Problem(f"{field}.thresholds", f"values must ascend, got {values}"))


def _overlap(a: Widget, b: Widget) -> bool:
    return a.x < b.x + b.width and b.x < a.x + a.width and a.y < b.y + b.height and b.y < a.y + a.height


def parse_dashboard(body: Any) -> DashboardSpec:
    """Validate a dashboard body (the seed's "Create Dashboard" shape)."""
    if not isinstance(body, dict):
        raise ValidationError.of([Problem("body", "must be a JSON object")])
    problems = [
        Problem(k, f"unknown field; known: {', '.join(DASHBOARD_FIELDS)}")
        for k in body
        if k not in DASHBOARD_FIELDS
    ]
    name = body.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        problems.append(Problem("name", "is required: 1 to 200 characters"))
    if body.get("description") is not None and not isinstance(body["description"], str):
        problems.append(Problem("description", "must be a string"))
    refresh = body.get("refresh_interval", 5)
    if type(refresh) is not int or refresh < 1:
        problems.append(Problem("refresh_interval", "must be an integer number of seconds, at least 1"))
    raw_widgets = body.get("widgets", [])
    widgets: list[Widget] = []
    if not isinstance(raw_widgets, list):
        problems.append(Problem("widgets", "must be a list"))
        raw_widgets = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_widgets):
        field = f"widgets[{i}]"
        if not isinstance(raw, dict):
            problems.append(Problem(field, "must be an object"))
            continue
        problems.extend(
            Problem(f"{field}.{k}", f"unknown field; known: {', '.join(WIDGET_FIELDS)}")
            for k in raw
            if k not in WIDGET_FIELDS
        )
        wid = raw.get("id")
        if not isinstance(wid, str) or not wid:
            problems.append(Problem(f"{field}.id", "is required: a string"))
        elif wid in seen:
            problems.append(Problem(f"{field}.id", f"{wid!r} is already the id of widgets[{seen[wid]}]"))
        else:
            seen[wid] = i
        wtype = raw.get("type")
        if wtype not in WIDGET_TYPES:
            problems.append(Problem(f"{field}.type", f"must be one of {', '.join(WIDGET_TYPES)}"))
        if raw.get("title") is not None and not isinstance(raw["title"], str):
            problems.append(Problem(f"{field}.title", "must be a string"))
        query = None
        try:
            query = parse_query(raw.get("metric_query"), prefix=f"{field}.metric_query.")
        except ValidationError as exc:
            problems.extend(exc.details)
        position = _position(raw.get("position"), f"{field}.position", problems)
        if raw.get("visualization_config") is not None:
            _visualization(raw["visualization_config"], f"{field}.visualization_config", problems)
        if query is not None and position is not None and isinstance(wid, str) and wtype in WIDGET_TYPES:
            widgets.append(Widget(wid, wtype, query, *position))
    for i, a in enumerate(widgets):
        for b in widgets[i + 1 :]:
            if _overlap(a, b):
                problems.append(Problem("widgets", f"{a.id!r} and {b.id!r} overlap on the grid"))
    if problems:
        raise ValidationError.of(problems)
    definition = {k: body[k] for k in DASHBOARD_FIELDS if k in body}
    definition.setdefault("refresh_interval", refresh)
    return DashboardSpec(str(name).strip(), int(refresh), tuple(widgets), definition)
