"""Alert rules: POST|GET /api/v1/alerts, GET|PUT|DELETE /api/v1/alerts/{id}, GET .../events."""

from __future__ import annotations

from typing import Any

from sanic import Blueprint, HTTPResponse, Request

from rtanalytics.core.alert_machine import AlertState
from rtanalytics.core.alerting import AlertService
from rtanalytics.core.alerts import AlertEvent, AlertRule
from rtanalytics.core.durations import format_timestamp
from rtanalytics.core.errors import Problem, ValidationError
from rtanalytics.entrypoints.http.common import json_body, json_response, services, tenant_of, versioned_body

bp = Blueprint("alerts", url_prefix="/api/v1/alerts")
_SEVERITY_OF_STATE = {
    AlertState.FIRING: 4,
    AlertState.PENDING: 3,
    AlertState.RESOLVED: 2,
    AlertState.NO_DATA: 1,
}


def rule_json(service: AlertService, rule: AlertRule) -> dict[str, Any]:
    instances = service.instances(rule)
    state = max(
        (i.state for i in instances), key=lambda s: _SEVERITY_OF_STATE.get(s, 0), default=AlertState.OK
    )
    return {
        "id": rule.id,
        "version": rule.version,
        **rule.spec.definition,
        "state": state.value,
        "instances": [
            {
                "group": i.group,
                "state": i.state.value,
                "value": i.value,
                "since": format_timestamp(i.since) if i.since is not None else None,
            }
            for i in instances
        ],
        "created_at": format_timestamp(rule.created_at),
        "updated_at": format_timestamp(rule.updated_at),
    }


def event_json(event: AlertEvent) -> dict[str, Any]:
    out: dict[str, Any] = {"at": format_timestamp(event.at), "kind": event.kind, "group": dict(event.group)}
    for key in ("value", "action", "attempt", "detail"):
        if getattr(event, key) is not None:
            out[key] = getattr(event, key)
    return out


@bp.post("", strict_slashes=False)
async def create(request: Request) -> HTTPResponse:
    app = services(request)
    rule = await app.alerts.create(tenant_of(request), json_body(request))
    return json_response(rule_json(app.alerts, rule), status=201)


@bp.get("", strict_slashes=False)
async def list_rules(request: Request) -> HTTPResponse:
    app = services(request)
    rules = await app.alerts.rules(tenant_of(request))
    return json_response({"alerts": [rule_json(app.alerts, r) for r in rules]})


@bp.get("/<rule_id:str>")
async def get(request: Request, rule_id: str) -> HTTPResponse:
    app = services(request)
    return json_response(rule_json(app.alerts, await app.alerts.get(tenant_of(request), rule_id)))


@bp.put("/<rule_id:str>")
async def replace(request: Request, rule_id: str) -> HTTPResponse:
    """A whole new definition; with `version`, 409 if someone else changed it first."""
    app = services(request)
    body, version = versioned_body(request)
    rule = await app.alerts.replace(tenant_of(request), rule_id, body, version)
    return json_response(rule_json(app.alerts, rule))


@bp.delete("/<rule_id:str>")
async def delete(request: Request, rule_id: str) -> HTTPResponse:
    await services(request).alerts.delete(tenant_of(request), rule_id)
    return HTTPResponse(status=204)


@bp.get("/<rule_id:str>/events")
async def events(request: Request, rule_id: str) -> HTTPResponse:
    raw = request.args.get("limit", "100")
    if not raw.isdigit() or not 1 <= int(raw) <= 1_000:
        raise ValidationError.of([Problem("limit", "must be an integer from 1 to 1000")])
    found = await services(request).alerts.events(tenant_of(request), rule_id, int(raw))
    return json_response({"events": [event_json(e) for e in found]})
