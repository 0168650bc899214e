"""Where alert notifications go out: email, Slack, webhooks."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import attrs

from rtanalytics.core.alerts import Action


@attrs.frozen
class AlertMessage:
    """One transition of one alert instance, as every channel needs it."""

    rule_id: str
    rule_name: str
    tenant: str
    metric: str
    group: Mapping[str, str | None]
    state: str  # firing | resolved
    value: float | None
    operator: str
    threshold: float
    severity: str
    at: float
    dashboard_url: str | None = None


class Notifier(Protocol):
    async def deliver(self, action: Action, message: AlertMessage) -> None:
        """Send one notification; raise DeliveryError when it did not arrive."""
        ...
