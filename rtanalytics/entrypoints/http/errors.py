"""The one place where errors become HTTP status codes and JSON bodies; never a traceback."""

from __future__ import annotations

import logging
from typing import Any

from sanic import HTTPResponse, Request
from sanic.exceptions import SanicException

from rtanalytics.core.errors import (
    AuthError,
    BackendUnavailableError,
    ConflictError,
    ForbiddenError,
    LimitExceededError,
    NotFoundError,
    PayloadTooLargeError,
    Problem,
    RtAnalyticsError,
    ValidationError,
)
from rtanalytics.entrypoints.http.wire import dumps

log = logging.getLogger("rtanalytics.http")

STATUS: tuple[tuple[type[RtAnalyticsError], int], ...] = (
    (PayloadTooLargeError, 413),
    (ValidationError, 400),
    (ForbiddenError, 403),
    (AuthError, 401),
    (NotFoundError, 404),
    (ConflictError, 409),
    (LimitExceededError, 429),
    (BackendUnavailableError, 503),
)


def error_body(code: str, message: str, details: Any = ()) -> bytes:
    return dumps({"error": {"code": code, "message": message, "details": list(details)}})


def error_response(status: int, code: str, message: str, details: Any = ()) -> HTTPResponse:
    return HTTPResponse(error_body(code, message, details), status=status, content_type="application/json")


def status_of(exc: RtAnalyticsError) -> int:
    for cls, status in STATUS:
        if isinstance(exc, cls):
            return status
    return 500


def handle(request: Request, exc: Exception) -> HTTPResponse:
    """Sanic's error handler for every exception."""
    if isinstance(exc, RtAnalyticsError):
        details = [{"field": p.field, "message": p.message} for p in exc.details if isinstance(p, Problem)]
        return error_response(status_of(exc), exc.code, exc.message, details)
    if isinstance(exc, SanicException):
        status = exc.status_code
        code = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}.get(
            status, "http_error"
        )
        message = str(exc) or code
        if status == 413:
            limit = request.app.config.REQUEST_MAX_SIZE
            message = f"request body is over the limit of {limit} bytes"
        return error_response(status, code, message)
    log.exception("unhandled error on %s %s", request.method, request.path)
    return error_response(500, "internal_error", "internal error; the request id is in the server log")
