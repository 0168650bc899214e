"""Where alert rules and their events are kept."""

from __future__ import annotations

from typing import Protocol

from rtanalytics.core.alerts import AlertEvent, AlertRule


class AlertStore(Protocol):
    async def put(self, rule: AlertRule, expected_version: int | None) -> None:
        """Store a rule; ConflictError when `expected_version` is given and is not the stored one."""
        ...

    async def get(self, tenant: str, rule_id: str) -> AlertRule | None:
        """One rule of the tenant, or None."""
        ...

    async def all(self, tenant: str) -> list[AlertRule]:
        """Every rule of the tenant, oldest first."""
        ...

    async def tenants(self) -> list[str]:
        """Tenants that have rules."""
        ...

    async def delete(self, tenant: str, rule_id: str) -> bool:
        """Remove a rule and its events; whether it existed."""
        ...

    async def add_event(self, tenant: str, rule_id: str, event: AlertEvent) -> None:
        """Record something that happened to a rule (the store keeps the most recent ones)."""
        ...

    async def events(self, tenant: str, rule_id: str, limit: int) -> list[AlertEvent]:
        """The most recent events of a rule, newest first."""
        ...
