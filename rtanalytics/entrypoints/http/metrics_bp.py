"""POST /api/v1/metrics and GET /api/v1/metrics/{name}/current."""

from __future__ import annotations

from sanic import Blueprint, HTTPResponse, Request

from rtanalytics.core.errors import Problem, ValidationError
from rtanalytics.entrypoints.http.common import json_response, raw_body, services, tenant_of

bp = Blueprint("metrics", url_prefix="/api/v1/metrics")

CURRENT_PARAMS = ("window", "aggregation", "group_by", "tenant_id")


@bp.post("", strict_slashes=False)
async def ingest(request: Request) -> HTTPResponse:
    """Accept the valid points of a batch: 202 when any is accepted, 400 when none is."""
    app = services(request)
    tenant = tenant_of(request)
    body = raw_body(request)
    result = await app.engine.ingest_json(body, tenant)
    return json_response(result, status=202 if result.accepted else 400)


@bp.get("/<name:str>/current")
async def current(request: Request, name: str) -> HTTPResponse:
    """The metric's value over its window ending now; `?tags.K=V`, window, aggregation, group_by."""
    app = services(request)
    tenant = tenant_of(request)
    tags: dict[str, str] = {}
    problems = []
    for key, values in request.args.items():
        if key.startswith("tags."):
            tags[key[5:]] = values[-1]
        elif key not in CURRENT_PARAMS:
            problems.append(Problem(key, f"unknown parameter; use tags.<key>, {', '.join(CURRENT_PARAMS)}"))
    if problems:
        raise ValidationError.of(problems)
    group_by = [g for raw in request.args.getlist("group_by", []) for g in raw.split(",") if g]
    result = await app.engine.current(
        name,
        tenant,
        tags=tags or None,
        window=request.args.get("window"),
        aggregation=request.args.get("aggregation"),
        group_by=group_by,
    )
    return json_response(result)
