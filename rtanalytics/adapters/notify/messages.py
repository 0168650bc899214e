"""How an alert transition reads in each channel."""

from __future__ import annotations

from typing import Any

from rtanalytics.core.durations import format_timestamp
from rtanalytics.ports.notifier import AlertMessage


def _group(message: AlertMessage) -> str:
    return ", ".join(f"{k}={v if v is not None else '(none)'}" for k, v in message.group.items())


def _value(message: AlertMessage) -> str:
    return "no data" if message.value is None else f"{message.value:g}"


def subject(message: AlertMessage) -> str:
    group = f" [{_group(message)}]" if message.group else ""
    return f"[{message.state.upper()}] {message.rule_name}{group}"


def text(message: AlertMessage) -> str:
    """Plain text: what, where, the value against the threshold, when, and the dashboard."""
    lines = [
        subject(message),
        f"{message.metric} is {_value(message)} (condition: {message.operator} {message.threshold:g}), "
        f"severity {message.severity}, at {format_timestamp(message.at)}",
    ]
    if message.dashboard_url:
        lines.append(f"Dashboard: {message.dashboard_url}")
    return "\n".join(lines)


def slack(message: AlertMessage) -> dict[str, Any]:
    """A Slack incoming-webhook payload."""
    icon = ":rotating_light:" if message.state == "firing" else ":white_check_mark:"
    head = f"{icon} *{message.state.upper()}* {message.rule_name}"
    if message.group:
        head += f"  `{_group(message)}`"
    body = f"`{message.metric}` is *{_value(message)}* (condition {message.operator} {message.threshold:g}) · severity {message.severity}"
    if message.dashboard_url:
        body += f" · <{message.dashboard_url}|dashboard>"
    return {
        "text": f"{head}\n{body}",
        "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": f"{head}\n{body}"}}],
    }


def webhook(message: AlertMessage) -> dict[str, Any]:
    """The JSON a generic webhook receives."""
    return {
        "alert_id": message.rule_id,
        "alert_name": message.rule_name,
        "tenant": message.tenant,
        "metric": message.metric,
        "group": dict(message.group),
        "state": message.state,
        "value": message.value,
        "condition": {"operator": message.operator, "threshold": message.threshold},
        "severity": message.severity,
        "at": format_timestamp(message.at),
        "dashboard_url": message.dashboard_url,
    }
