"""POST /api/v1/query."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request

from rtanalytics.core.query import parse_query
from rtanalytics.entrypoints.http.common import json_body, json_response, services, tenant_of

bp = Blueprint("query", url_prefix="/api/v1/query")


@bp.post("", strict_slashes=False)
async def query(request: Request) -> HTTPResponse:
    """Windowed aggregations, sliced by tags, as one value or a time series per metric x group."""
    app = services(request)
    tenant = tenant_of(request)
    q = parse_query(json_body(request))
    return json_response(await app.engine.query(q, tenant))
