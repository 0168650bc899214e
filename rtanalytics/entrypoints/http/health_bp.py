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
    """Each backend's status and sizes."""
    app = services(request)
    stats = await app.engine.store.stats()
    return json_response(
        {
            "status": "ok",
            "backend": stats.backend,
            "backends": {stats.backend: {"status": "up", **stats.details}},
            "series": dict(stats.series_by_tenant),
            "metrics": dict(stats.metrics_by_tenant),
            "points_accepted": app.engine.points_accepted,
        }
    )
