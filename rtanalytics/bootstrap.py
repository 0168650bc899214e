"""The composition root: the only module that chooses and builds adapters.

Nothing connects at import time; `bootstrap(config)` builds, `App.start()` connects.
"""

from __future__ import annotations

import socket
from collections.abc import Sequence
from typing import Any

import attrs

from rtanalytics.adapters.clock import SystemClock
from rtanalytics.adapters.memory.alert_store import MemoryAlertStore
from rtanalytics.adapters.memory.dashboard_store import MemoryDashboardStore
from rtanalytics.adapters.memory.metric_store import MemoryMetricStore, allow_fold_spin
from rtanalytics.adapters.memory.update_bus import InProcessUpdateBus
from rtanalytics.adapters.notify.channels import DispatchNotifier, HttpNotifier, SmtpNotifier, SmtpSettings
from rtanalytics.config import Config
from rtanalytics.core.alerting import AlertService
from rtanalytics.core.alerts import NotifyDefaults
from rtanalytics.core.dashboard_service import DashboardService
from rtanalytics.core.engine import AnalyticsEngine, EngineLimits
from rtanalytics.core.errors import ValidationError
from rtanalytics.core.live import LiveQueries
from rtanalytics.core.windows import Tier, default_tiers
from rtanalytics.ports.clock import Clock
from rtanalytics.ports.metric_store import MetricStore
from rtanalytics.ports.notifier import Notifier
from rtanalytics.ports.update_bus import UpdateBus


@attrs.define
class App:
    """Everything a running rtanalytics needs, wired."""

    config: Config
    engine: AnalyticsEngine
    clock: Clock
    alerts: AlertService
    notifier: Notifier
    live: LiveQueries
    bus: UpdateBus
    dashboards: DashboardService

    async def start(self) -> None:
        await self.engine.start()

    async def aclose(self) -> None:
        await self.alerts.aclose()
        closer = getattr(self.notifier, "aclose", None)
        if closer is not None:
            await closer()
        await self.engine.aclose()


def _limits(config: Config) -> EngineLimits:
    return EngineLimits(
        max_query_size=config.max_query_size,
        max_series_per_tenant=config.max_series_per_tenant,
        max_points_per_request=config.max_points_per_request,
    )


def build_store(config: Config, tiers: Sequence[Tier]) -> MetricStore:
    """The configured backend's metric store (not connected yet)."""
    if config.backend == "ignite":
        from rtanalytics.adapters.ignite.metric_store import IgniteMetricStore, IgniteSettings

        settings = IgniteSettings(
            nodes=config.ignite_nodes(),
            backups=config.ignite_backups,
            raw_ttl_s=config.cache_ttl_s,
            flush_interval_s=config.ignite_flush_ms / 1000,
            writer_id=config.writer_id or f"{socket.gethostname()}-{config.port}",
        )
        return IgniteMetricStore(settings, tiers)
    allow_fold_spin(config.fold_spin)
    return MemoryMetricStore(tiers, memory_budget=config.memory_budget_mb * 2**20)


def build_engine(
    config: Config, *, store: MetricStore | None = None, clock: Clock | None = None
) -> AnalyticsEngine:
    """An engine on the configured backend (or on the store given)."""
    problems = config.problems()
    if problems:
        raise ValidationError.of(problems)
    tiers = default_tiers(config.coarse_retention_s)
    if store is None:
        store = build_store(config, tiers)
    return AnalyticsEngine(store, clock or SystemClock(), limits=_limits(config), tiers=tiers)


def build_bus(store: MetricStore) -> UpdateBus:
    """Notices within this process; on a shared Ignite store, also other instances' notices."""
    from rtanalytics.adapters.ignite.metric_store import IgniteMetricStore

    if isinstance(store, IgniteMetricStore):
        from rtanalytics.adapters.ignite.update_bus import IgniteUpdateBus

        return IgniteUpdateBus(store)
    return InProcessUpdateBus()


def notify_defaults(config: Config) -> NotifyDefaults:
    return NotifyDefaults(
        config.smtp_host, config.alert_email_to, config.slack_webhook_url, config.webhook_url
    )


def build_notifier(config: Config) -> DispatchNotifier:
    smtp = None
    if config.smtp_host:
        smtp = SmtpNotifier(
            SmtpSettings(
                config.smtp_host,
                config.smtp_port,
                config.smtp_user,
                config.smtp_password,
                config.smtp_tls,
                config.smtp_from,
                ca_file=config.smtp_ca_file,
            )
        )
    return DispatchNotifier(smtp, HttpNotifier())


def bootstrap(config: Config | None = None, **overrides: Any) -> App:
    """Build the application; `overrides` replace adapters by name (`store`, `clock`,
    `alert_store`, `notifier`) or settings (`retry`)."""
    config = config or Config()
    clock = overrides.get("clock") or SystemClock()
    engine = build_engine(config, store=overrides.get("store"), clock=clock)
    notifier = overrides.get("notifier") or build_notifier(config)
    bus: UpdateBus = overrides.get("bus") or build_bus(engine.store)
    engine.on_change(bus.publish)
    live = LiveQueries(
        engine,
        clock,
        max_per_tenant=config.max_subscriptions_per_tenant,
        max_per_connection=config.max_subscriptions_per_connection,
    )
    bus.subscribe(live.notice)
    alerts = AlertService(
        engine,
        overrides.get("alert_store") or MemoryAlertStore(),
        notifier,
        clock,
        notify_defaults(config),
        public_url=config.public_url,
        retry=overrides.get("retry"),
    )
    bus.subscribe(alerts.notice)
    dashboards = DashboardService(engine, overrides.get("dashboard_store") or MemoryDashboardStore(), clock)
    return App(
        config=config,
        engine=engine,
        clock=clock,
        alerts=alerts,
        notifier=notifier,
        live=live,
        bus=bus,
        dashboards=dashboards,
    )
