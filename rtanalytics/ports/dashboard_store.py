"""Where dashboards are kept (memory now; the Ignite `dashboards` cache, no TTL, later)."""

from __future__ import annotations

from typing import Protocol

from rtanalytics.core.dashboards import Dashboard


class DashboardStore(Protocol):
    async def put(self, dashboard: Dashboard, expected_version: int | None) -> None:
        """Store a dashboard; ConflictError when `expected_version` is given and is not the stored one."""
        ...

    async def get(self, tenant: str, dashboard_id: str) -> Dashboard | None:
        """One dashboard of the tenant, or None."""
        ...

    async def page(
        self, tenant: str, offset: int, limit: int, name: str | None
    ) -> tuple[list[Dashboard], int]:
        """Dashboards newest first (whose name contains `name`), and how many match in all."""
        ...

    async def delete(self, tenant: str, dashboard_id: str) -> bool:
        """Remove a dashboard; whether it existed."""
        ...
