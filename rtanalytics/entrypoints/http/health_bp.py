"""GET /health (liveness) and GET /api/v1/health (backends and sizes)."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request

from rtanalytics.entrypoints.http.common import json_response, services

bp = Blueprint("health")


@bp.get("/health")
async def liveness(request: Request) -> HTTPResponse:
    """200 while the process serves."""
    return json_response({"status": "ok"})


@bp.get("/api/v1/health")
async def readiness(request: Request) -> HTTPResponse:
    """Readiness: each backend's status and sizes; 503 when a required backend is down."""
    app = services(request)
    stats = await app.engine.store.stats()
    return json_response(
        {
            "status": "ok" if stats.up else "unavailable",
            "backend": stats.backend,
            "backends": {stats.backend: {"status": "up" if stats.up else "down", **stats.details}},
            "series": dict(stats.series_by_tenant),
            "metrics": dict(stats.metrics_by_tenant),
            "points_accepted": app.engine.points_accepted,
            "points_rejected": dict(app.engine.points_rejected),
        },
        status=200 if stats.up else 503,
    )
