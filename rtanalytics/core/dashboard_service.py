"""Dashboard use cases: manage them, and evaluate every widget's query in one call."""

from __future__ import annotations

import uuid
from typing import Any

import attrs

from rtanalytics.core.dashboards import Dashboard, parse_dashboard
from rtanalytics.core.engine import AnalyticsEngine
from rtanalytics.core.errors import NotFoundError, RtAnalyticsError
from rtanalytics.core.results import QueryResult
from rtanalytics.ports.clock import Clock
from rtanalytics.ports.dashboard_store import DashboardStore


class DashboardService:
    def __init__(self, engine: AnalyticsEngine, store: DashboardStore, clock: Clock) -> None:
        self.engine = engine
        self.store = store
        self.clock = clock

    async def create(self, tenant: str, body: Any) -> Dashboard:
        spec = parse_dashboard(body)
        now = self.clock.now()
        dashboard = Dashboard(uuid.uuid4().hex[:16], tenant, spec, 1, now, now)
        await self.store.put(dashboard, None)
        return dashboard

    async def get(self, tenant: str, dashboard_id: str) -> Dashboard:
        found = await self.store.get(tenant, dashboard_id)
        if found is None:
            raise NotFoundError(f"dashboard {dashboard_id!r} does not exist in tenant {tenant!r}")
        return found

    async def page(
        self, tenant: str, offset: int, limit: int, name: str | None
    ) -> tuple[list[Dashboard], int]:
        return await self.store.page(tenant, offset, limit, name)

    async def replace(self, tenant: str, dashboard_id: str, body: Any, version: int | None) -> Dashboard:
        held = await self.get(tenant, dashboard_id)
        spec = parse_dashboard(body)
        dashboard = attrs.evolve(held, spec=spec, version=held.version + 1, updated_at=self.clock.now())
        await self.store.put(dashboard, version if version is not None else held.version)
        return dashboard

    async def delete(self, tenant: str, dashboard_id: str) -> None:
        if not await self.store.delete(tenant, dashboard_id):
            raise NotFoundError(f"dashboard {dashboard_id!r} does not exist in tenant {tenant!r}")

    async def data(self, tenant: str, dashboard_id: str) -> dict[str, QueryResult | RtAnalyticsError]:
        """Every widget's query answered (or the error that query met), by widget id."""
        dashboard = await self.get(tenant, dashboard_id)
        out: dict[str, QueryResult | RtAnalyticsError] = {}
        for widget in dashboard.spec.widgets:
            try:
                out[widget.id] = await self.engine.query(widget.query, tenant)
            except RtAnalyticsError as exc:
                out[widget.id] = exc
        return out
