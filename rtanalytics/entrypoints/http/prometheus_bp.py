"""GET /api/v1/export/prometheus: the tenant's metrics and the service's own, streamed."""

from __future__ import annotations

from sanic import Blueprint, Request

from rtanalytics.entrypoints.http import exposition
from rtanalytics.entrypoints.http.common import services, tenant_of

bp = Blueprint("prometheus")


@bp.get("/api/v1/export/prometheus")
async def export(request: Request) -> None:
    """Text format 0.0.4, or OpenMetrics when the Accept header asks for it."""
    app = services(request)
    tenant = tenant_of(request)
    openmetrics = exposition.wants_openmetrics(request.headers.get("accept"))
    content_type = exposition.OPENMETRICS_CONTENT_TYPE if openmetrics else exposition.TEXT_CONTENT_TYPE
    stats = await app.engine.store.stats()
    own = request.app.ctx.telemetry.families(app.engine, stats, tenant, app.live)
    response = await request.respond(content_type=content_type)
    await response.send(exposition.render(own, openmetrics))
    async for chunk in exposition.chunks(app.engine.snapshots(tenant), openmetrics):
        await response.send(chunk)
    await response.send(b"# EOF\n" if openmetrics else b"")
    await response.eof()
