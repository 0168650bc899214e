"""The service's own metrics (`rtanalytics_*`): request latency by route, points accepted and
rejected, series and metrics per tenant, backend status."""

from __future__ import annotations

from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Histogram, disable_created_metrics
from prometheus_client.core import Metric

from rtanalytics.core.engine import AnalyticsEngine
from rtanalytics.core.live import LiveQueries
from rtanalytics.ports.metric_store import StoreStats

# `_created` series double every counter and histogram for no use to a scraper of this service.
disable_created_metrics()  # type: ignore[no-untyped-call]

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Telemetry:
    """One per app: a registry of its own, so several apps in one process do not collide."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self.latency = Histogram(
            "rtanalytics_request_duration_seconds",
            "HTTP request latency by route",
            ["route", "method", "status"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )

    def families(
        self, engine: AnalyticsEngine, stats: StoreStats, tenant: str, live: LiveQueries | None = None
    ) -> list[Metric]:
        """Every self-metric now; per-tenant figures only for the tenant asking."""
        out = list(self.registry.collect())
        accepted = Metric("rtanalytics_points_accepted", "Points accepted", "counter")
        accepted.add_sample("rtanalytics_points_accepted_total", {}, engine.points_accepted)
        rejected = Metric("rtanalytics_points_rejected", "Points rejected, by the field at fault", "counter")
        for reason, count in sorted(engine.points_rejected.items()):
            rejected.add_sample("rtanalytics_points_rejected_total", {"reason": reason}, count)
        out += [accepted, rejected]
        out.append(_gauge("rtanalytics_active_series", "Active series", stats.series_by_tenant, tenant))
        out.append(_gauge("rtanalytics_metrics", "Metric names", stats.metrics_by_tenant, tenant))
        up = Metric("rtanalytics_backend_up", "1 when the storage backend answers", "gauge")
        up.add_sample("rtanalytics_backend_up", {"backend": stats.backend}, 1.0 if stats.up else 0.0)
        out.append(up)
        watches = Metric("rtanalytics_live_watches", "Standing aggregates kept for live queries", "gauge")
        watches.add_sample("rtanalytics_live_watches", {}, float(engine.watches))
        out.append(watches)
        if live is not None:
            for name, text, value in (
                ("rtanalytics_live_connections", "Open WebSocket connections", live.connections),
                ("rtanalytics_live_subscriptions", "Live subscriptions", live.subscriptions),
            ):
                gauge = Metric(name, text, "gauge")
                gauge.add_sample(name, {}, float(value))
                out.append(gauge)
            runs = Metric(
                "rtanalytics_live_evaluations", "Live queries evaluated (one per query group)", "counter"
            )
            runs.add_sample("rtanalytics_live_evaluations_total", {}, float(live.evaluations))
            out.append(runs)
        return out

    def observe(self, route: str, method: str, status: int, seconds: float) -> None:
        self.latency.labels(route, method, str(status)).observe(seconds)


def _gauge(name: str, text: str, by_tenant: Mapping[str, int], tenant: str) -> Metric:
    family = Metric(name, text, "gauge")
    family.add_sample(name, {"tenant": tenant}, float(by_tenant.get(tenant, 0)))
    return family
