"""Which tenant a request acts for (SPEC §7)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from sanic import Request

from rtanalytics.config import TENANT_PATTERN
from rtanalytics.core.errors import AuthError, ForbiddenError, Problem, ValidationError

_TENANT_RE = re.compile(TENANT_PATTERN)


def resolve_tenant(request: Request, api_keys: Mapping[str, str]) -> str:
    """With API keys the key decides; without, `tenant_id` / X-Tenant-ID, default `default`."""
    asked = request.args.get("tenant_id") or request.headers.get("x-tenant-id")
    if asked is not None and not _TENANT_RE.match(asked):
        raise ValidationError.of([Problem("tenant_id", f"must match {TENANT_PATTERN}")])
    if not api_keys:
        return asked or "default"
    # A browser cannot set headers on a WebSocket, so `api_key` may come as a query parameter too.
    key = request.headers.get("x-api-key") or request.args.get("api_key")
    auth = request.headers.get("authorization", "")
    if key is None and auth.lower().startswith("bearer "):
        key = auth[7:].strip()
    if not key:
        raise AuthError("an API key is required: send Authorization: Bearer <key> or X-API-Key")
    tenant = api_keys.get(key)
    if tenant is None:
        raise AuthError("unknown API key")
    if asked is not None and asked != tenant:
        raise ForbiddenError(f"this API key belongs to tenant {tenant!r}, not {asked!r}")
    return tenant
