"""Alert rules and events in this process's memory."""

from __future__ import annotations

from collections import deque

from rtanalytics.core.alerts import AlertEvent, AlertRule
from rtanalytics.core.errors import ConflictError

EVENTS_KEPT = 1_000


class MemoryAlertStore:
    def __init__(self) -> None:
        self._rules: dict[str, dict[str, AlertRule]] = {}
        self._events: dict[tuple[str, str], deque[AlertEvent]] = {}

    async def put(self, rule: AlertRule, expected_version: int | None) -> None:
        rules = self._rules.setdefault(rule.tenant, {})
        held = rules.get(rule.id)
        if expected_version is not None and (held is None or held.version != expected_version):
            current = held.version if held is not None else "none"
            raise ConflictError(
                f"alert {rule.id!r} is at version {current}, not {expected_version}; read it again and retry"
            )
        rules[rule.id] = rule

    async def get(self, tenant: str, rule_id: str) -> AlertRule | None:
        return self._rules.get(tenant, {}).get(rule_id)

    async def all(self, tenant: str) -> list[AlertRule]:
        return sorted(self._rules.get(tenant, {}).values(), key=lambda r: (r.created_at, r.id))

    async def tenants(self) -> list[str]:
        return [t for t, rules in self._rules.items() if rules]

    async def delete(self, tenant: str, rule_id: str) -> bool:
        self._events.pop((tenant, rule_id), None)
        return self._rules.get(tenant, {}).pop(rule_id, None) is not None

    async def add_event(self, tenant: str, rule_id: str, event: AlertEvent) -> None:
        self._events.setdefault((tenant, rule_id), deque(maxlen=EVENTS_KEPT)).append(event)

    async def events(self, tenant: str, rule_id: str, limit: int) -> list[AlertEvent]:
        held = self._events.get((tenant, rule_id), deque())
        return list(reversed(held))[:limit]
