"""Alert rules: the seed's shape plus aggregation, window, filters, group_by, resolve_duration,
severity, no_data and dashboard_id; validated with every problem reported at once."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

import attrs

from rtanalytics.core.alert_machine import OPERATORS, AlertState, Condition
from rtanalytics.core.durations import parse_duration
from rtanalytics.core.errors import Problem, ValidationError
from rtanalytics.core.metrics import NAME_PATTERN
from rtanalytics.core.query import Query, parse_query

ACTION_TYPES = ("email", "slack", "webhook")
SEVERITIES = ("info", "warning", "critical")
NO_DATA = ("ok", "alerting")
RULE_FIELDS = (
    "alert_name",
    "metric",
    "condition",
    "actions",
    "aggregation",
    "window",
    "filters",
    "group_by",
    "resolve_duration",
    "severity",
    "no_data",
    "dashboard_id",
    "description",
)
_NAME_RE = re.compile(NAME_PATTERN)
_EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+$")


@attrs.frozen
class NotifyDefaults:
    """Where bare action names deliver (RTA_SMTP_*, RTA_ALERT_EMAIL_TO, RTA_SLACK_WEBHOOK_URL, RTA_WEBHOOK_URL)."""

    smtp_host: str | None = None
    email_to: tuple[str, ...] = ()
    slack_webhook_url: str | None = None
    webhook_url: str | None = None


@attrs.frozen
class Action:
    """Where one notification goes: email recipients, a Slack incoming webhook, or any URL."""

    type: str
    targets: tuple[str, ...]


@attrs.frozen
class RuleSpec:
    """A validated rule, without identity: `definition` is its canonical JSON form."""

    name: str
    metric: str
    condition: Condition
    query: Query
    actions: tuple[Action, ...]
    severity: str
    dashboard_id: str | None
    definition: Mapping[str, Any] = attrs.field(eq=False)


@attrs.frozen
class AlertRule:
    id: str
    tenant: str
    spec: RuleSpec
    version: int
    created_at: float
    updated_at: float


@attrs.frozen
class AlertEvent:
    """Something that happened to a rule: a transition, a delivery, a delivery failure."""

    at: float
    kind: str  # firing | resolved | delivered | delivery_failed | evaluation_failed
    group: Mapping[str, str | None] = attrs.field(factory=dict)
    value: float | None = None
    action: str | None = None
    attempt: int | None = None
    detail: str | None = None


@attrs.frozen
class InstanceView:
    group: Mapping[str, str | None]
    state: AlertState
    value: float | None
    since: float | None


def _duration_s(raw: Any, field: str, problems: list[Problem]) -> float | None:
    """Seconds in a duration; zero is allowed here (fire or resolve at the first observation)."""
    if isinstance(raw, str) and re.fullmatch(r"0(ms|s|m|h|d)", raw):
        return 0.0
    try:
        return parse_duration(raw) / 1000
    except ValueError as exc:
        problems.append(Problem(field, str(exc)))
        return None


def _url(raw: Any, field: str, problems: list[Problem]) -> str | None:
    if not isinstance(raw, str) or not re.match(r"^https?://[^\s/]+", raw):
        problems.append(Problem(field, "must be an http:// or https:// URL"))
        return None
    return raw


def _action(raw: Any, i: int, defaults: NotifyDefaults, problems: list[Problem]) -> Action | None:
    field = f"actions[{i}]"
    kind: Any
    spec: dict[str, Any] | None
    if isinstance(raw, str):
        kind, spec = raw, None
    elif isinstance(raw, dict):
        kind, spec = raw.get("type"), raw
    else:
        problems.append(Problem(field, "must be an action name or an object with a `type`"))
        return None
    if kind not in ACTION_TYPES:
        problems.append(Problem(field, f"unknown action {kind!r}; use one of {', '.join(ACTION_TYPES)}"))
        return None
    if kind == "email":
        if defaults.smtp_host is None:
            problems.append(Problem(field, "email needs an SMTP server: RTA_SMTP_HOST is not set"))
        if spec is None:
            if not defaults.email_to:
                problems.append(
                    Problem(
                        field,
                        'bare `email` needs RTA_ALERT_EMAIL_TO (or give {"type": "email", "to": [...]})',
                    )
                )
                return None
            return Action("email", defaults.email_to)
        to = spec.get("to")
        if isinstance(to, str):
            to = [to]
        if (
            not isinstance(to, list)
            or not to
            or not all(isinstance(a, str) and _EMAIL_RE.match(a) for a in to)
        ):
            problems.append(Problem(f"{field}.to", "must be a non-empty list of email addresses"))
            return None
        return Action("email", tuple(to))
    key, setting = ("webhook_url", "RTA_SLACK_WEBHOOK_URL") if kind == "slack" else ("url", "RTA_WEBHOOK_URL")
    if spec is None:
        default = defaults.slack_webhook_url if kind == "slack" else defaults.webhook_url
        if default is None:
            problems.append(
                Problem(field, f'bare `{kind}` needs {setting} (or give {{"type": "{kind}", "{key}": ...}})')
            )
            return None
        return Action(kind, (default,))
    url = _url(spec.get(key), f"{field}.{key}", problems)
    return Action(kind, (url,)) if url else None


def parse_rule(body: Any, defaults: NotifyDefaults) -> RuleSpec:
    """Validate a rule body (the seed's alert configuration and the optional fields)."""
    if not isinstance(body, dict):
        raise ValidationError.of([Problem("body", "must be a JSON object")])
    problems: list[Problem] = []
    for key in body:
        if key not in RULE_FIELDS:
            problems.append(Problem(key, f"unknown field; known: {', '.join(RULE_FIELDS)}"))
    name = body.get("alert_name")
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        problems.append(Problem("alert_name", "is required: a name of 1 to 200 characters"))
    metric = body.get("metric")
    if not isinstance(metric, str) or _NAME_RE.match(metric) is None:
        problems.append(Problem("metric", f"is required and must match {NAME_PATTERN}"))
    condition = body.get("condition")
    op: Any = None
    threshold: Any = None
    duration: float | None = None
    resolve: float | None = None
    if not isinstance(condition, dict):
        problems.append(Problem("condition", 'is required: {"operator", "threshold", "duration"}'))
    else:
        for key in condition:
            if key not in ("operator", "threshold", "duration"):
                problems.append(
                    Problem(f"condition.{key}", "unknown field; known: operator, threshold, duration")
                )
        op = condition.get("operator")
        if op not in OPERATORS:
            problems.append(Problem("condition.operator", f"must be one of {' '.join(OPERATORS)}"))
        threshold = condition.get("threshold")
        if type(threshold) not in (int, float) or not math.isfinite(threshold):
            problems.append(Problem("condition.threshold", "must be a finite number"))
        duration = _duration_s(condition.get("duration", "0s"), "condition.duration", problems)
    if body.get("resolve_duration") is not None:
        resolve = _duration_s(body["resolve_duration"], "resolve_duration", problems)
    query_body: dict[str, Any] = {"metrics": [metric if isinstance(metric, str) else "x"]}
    for key in ("aggregation", "window", "filters", "group_by"):
        if body.get(key) is not None:
            query_body[key] = body[key]
    if query_body.get("aggregation") == "percentile":
        problems.append(
            Problem("aggregation", "must give one number: use p50, p90, p95, p99 or p999, not percentile")
        )
        query_body.pop("aggregation")
    query: Query | None = None
    try:
        query = parse_query(query_body)
    except ValidationError as exc:
        problems.extend(exc.details)
    actions_raw = body.get("actions", [])
    actions: list[Action] = []
    if not isinstance(actions_raw, list):
        problems.append(Problem("actions", "must be a list of actions"))
    else:
        for i, raw in enumerate(actions_raw):
            action = _action(raw, i, defaults, problems)
            if action is not None:
                actions.append(action)
    severity = body.get("severity", "warning")
    if severity not in SEVERITIES:
        problems.append(Problem("severity", f"must be one of {', '.join(SEVERITIES)}"))
    no_data = body.get("no_data", "ok")
    if no_data not in NO_DATA:
        problems.append(
            Problem("no_data", "must be `ok` (no data counts as the condition being false) or `alerting`")
        )
    dashboard_id = body.get("dashboard_id")
    if dashboard_id is not None and not isinstance(dashboard_id, str):
        problems.append(Problem("dashboard_id", "must be a string"))
    if body.get("description") is not None and not isinstance(body["description"], str):
        problems.append(Problem("description", "must be a string"))
    if problems:
        raise ValidationError.of(problems)
    assert query is not None and op is not None and duration is not None
    cond = Condition(
        op, float(threshold), duration, resolve if resolve is not None else duration, no_data == "alerting"
    )
    definition = {k: body[k] for k in RULE_FIELDS if k in body}
    return RuleSpec(
        str(name).strip(), str(metric), cond, query, tuple(actions), severity, dashboard_id, definition
    )
