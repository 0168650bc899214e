"""Helpers every blueprint shares: the wired App, the tenant, JSON in and out."""

from __future__ import annotations

from typing import Any

from sanic import HTTPResponse, Request

from rtanalytics.bootstrap import App
from rtanalytics.core.errors import PayloadTooLargeError, Problem, ValidationError
from rtanalytics.core.metrics import decode_json
from rtanalytics.entrypoints.http.tenancy import resolve_tenant
from rtanalytics.entrypoints.http.wire import dumps


def services(request: Request) -> App:
    return request.app.ctx.rta  # type: ignore[no-any-return]


def tenant_of(request: Request) -> str:
    return resolve_tenant(request, services(request).config.api_keys)


def raw_body(request: Request) -> bytes:
    """The request body, or a 400/413 when it is empty or over the limit."""
    if not request.body:
        raise ValidationError.of([Problem("body", "is empty; send a JSON object")])
    limit = services(request).config.max_request_bytes
    if len(request.body) > limit:  # the server enforces this too, but not under every ASGI host
        raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes")
    return request.body


def json_body(request: Request) -> Any:
    """The request body parsed as JSON, or a 400 that says why not."""
    return decode_json(raw_body(request))


def versioned_body(request: Request) -> tuple[dict[str, Any], int | None]:
    """A PUT body and its optional `version` (optimistic concurrency: 409 when stale)."""
    body = json_body(request)
    if not isinstance(body, dict):
        raise ValidationError.of([Problem("body", "must be a JSON object")])
    version = body.pop("version", None)
    if version is not None and (type(version) is not int or version < 1):
        raise ValidationError.of([Problem("version", "must be a positive integer")])
    return body, version


def json_response(value: Any, status: int = 200) -> HTTPResponse:
    return HTTPResponse(dumps(value), status=status, content_type="application/json")
