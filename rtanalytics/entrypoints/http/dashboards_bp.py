"""Dashboards: the JSON API under /api/v1/dashboards, and the pages that draw them."""

from __future__ import annotations

from importlib import resources
from typing import Any

from sanic import Blueprint, HTTPResponse, Request

from rtanalytics.core.dashboards import Dashboard
from rtanalytics.core.durations import format_timestamp
from rtanalytics.core.errors import NotFoundError, Problem, RtAnalyticsError, ValidationError
from rtanalytics.entrypoints.http.common import json_body, json_response, services, tenant_of, versioned_body
from rtanalytics.entrypoints.http.wire import converter

bp = Blueprint("dashboards")
STATIC = resources.files("rtanalytics.entrypoints.http") / "static"


def dashboard_json(dashboard: Dashboard) -> dict[str, Any]:
    return {
        "id": dashboard.id,
        "version": dashboard.version,
        **dashboard.spec.definition,
        "created_at": format_timestamp(dashboard.created_at),
        "updated_at": format_timestamp(dashboard.updated_at),
    }


def _int_arg(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.args.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ValidationError.of([Problem(name, f"must be an integer from {low} to {high}")])
    return int(raw)


@bp.post("/api/v1/dashboards")
async def create(request: Request) -> HTTPResponse:
    dashboard = await services(request).dashboards.create(tenant_of(request), json_body(request))
    return json_response(dashboard_json(dashboard), status=201)


@bp.get("/api/v1/dashboards")
async def list_dashboards(request: Request) -> HTTPResponse:
    """Newest first; `?limit=` (1-200, default 50), `?offset=`, `?name=` (contains)."""
    limit = _int_arg(request, "limit", 50, 1, 200)
    offset = _int_arg(request, "offset", 0, 0, 10**9)
    found, total = await services(request).dashboards.page(
        tenant_of(request), offset, limit, request.args.get("name")
    )
    return json_response(
        {"dashboards": [dashboard_json(d) for d in found], "total": total, "offset": offset, "limit": limit}
    )


@bp.get("/api/v1/dashboards/<dashboard_id:str>")
async def get(request: Request, dashboard_id: str) -> HTTPResponse:
    return json_response(
        dashboard_json(await services(request).dashboards.get(tenant_of(request), dashboard_id))
    )


@bp.put("/api/v1/dashboards/<dashboard_id:str>")
async def replace(request: Request, dashboard_id: str) -> HTTPResponse:
    """A whole new definition; with `version`, 409 if it changed since that version."""
    body, version = versioned_body(request)
    dashboard = await services(request).dashboards.replace(tenant_of(request), dashboard_id, body, version)
    return json_response(dashboard_json(dashboard))


@bp.delete("/api/v1/dashboards/<dashboard_id:str>")
async def delete(request: Request, dashboard_id: str) -> HTTPResponse:
    await services(request).dashboards.delete(tenant_of(request), dashboard_id)
    return HTTPResponse(status=204)


@bp.get("/api/v1/dashboards/<dashboard_id:str>/data")
async def data(request: Request, dashboard_id: str) -> HTTPResponse:
    """Every widget's query evaluated, by widget id (a widget whose query fails carries its error)."""
    answers = await services(request).dashboards.data(tenant_of(request), dashboard_id)
    widgets: dict[str, Any] = {}
    for widget_id, answer in answers.items():
        if isinstance(answer, RtAnalyticsError):
            widgets[widget_id] = {"error": {"code": answer.code, "message": answer.message}}
        else:
            widgets[widget_id] = converter.unstructure(answer)
    return json_response({"dashboard_id": dashboard_id, "widgets": widgets})


def _page(name: str) -> HTTPResponse:
    return HTTPResponse((STATIC / name).read_text(encoding="utf-8"), content_type="text/html; charset=utf-8")


@bp.get("/dashboards")
async def list_page(request: Request) -> HTTPResponse:
    return _page("dashboards.html")


@bp.get("/dashboards/<dashboard_id:str>")
async def dashboard_page(request: Request, dashboard_id: str) -> HTTPResponse:
    return _page("dashboard.html")


@bp.get("/static/<name:str>")
async def static(request: Request, name: str) -> HTTPResponse:
    """The page's assets, from the package (built once with web/, no CDN at run time)."""
    kinds = {".js": "application/javascript", ".css": "text/css", ".html": "text/html; charset=utf-8"}
    suffix = name[name.rfind(".") :] if "." in name else ""
    target = STATIC / name
    if "/" in name or suffix not in kinds or not target.is_file():
        raise NotFoundError(f"no static file {name!r}")
    return HTTPResponse(
        target.read_bytes(), content_type=kinds[suffix], headers={"cache-control": "max-age=300"}
    )
