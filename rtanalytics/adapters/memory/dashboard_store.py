"""Dashboards in this process's memory."""

from __future__ import annotations

from rtanalytics.core.dashboards import Dashboard
from rtanalytics.core.errors import ConflictError


class MemoryDashboardStore:
    def __init__(self) -> None:
        self._by_tenant: dict[str, dict[str, Dashboard]] = {}

    async def put(self, dashboard: Dashboard, expected_version: int | None) -> None:
        held = self._by_tenant.setdefault(dashboard.tenant, {}).get(dashboard.id)
        if expected_version is not None and (held is None or held.version != expected_version):
            current = held.version if held is not None else "none"
            raise ConflictError(
                f"dashboard {dashboard.id!r} is at version {current}, not {expected_version}; read it again and retry"
            )
        self._by_tenant[dashboard.tenant][dashboard.id] = dashboard

    async def get(self, tenant: str, dashboard_id: str) -> Dashboard | None:
        return self._by_tenant.get(tenant, {}).get(dashboard_id)

    async def page(
        self, tenant: str, offset: int, limit: int, name: str | None
    ) -> tuple[list[Dashboard], int]:
        found = [
            d
            for d in self._by_tenant.get(tenant, {}).values()
            if name is None or name.lower() in d.spec.name.lower()
        ]
        found.sort(key=lambda d: (d.created_at, d.id), reverse=True)
        return found[offset : offset + limit], len(found)

    async def delete(self, tenant: str, dashboard_id: str) -> bool:
        return self._by_tenant.get(tenant, {}).pop(dashboard_id, None) is not None
