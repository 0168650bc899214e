"""The one exception tree of rtanalytics.

RtAnalyticsError
├── ValidationError (ValueError)            bad input; carries every problem found
│   └── QueryTooLargeError                  a query over MAX_QUERY_SIZE
├── PayloadTooLargeError (ValueError)       a request over a size limit
├── NotFoundError (LookupError)             a metric, dashboard or alert that does not exist
├── ConflictError                           a stale version or a clashing definition
├── LimitExceededError                      a per-tenant limit (series, subscriptions) reached
├── AuthError (PermissionError)             no or unknown API key
│   └── ForbiddenError                      a key used for another tenant
├── BackendUnavailableError (ConnectionError)  a storage or stream backend cannot be reached
└── DeliveryError (ConnectionError)         a notification did not arrive (retried, then recorded)

The HTTP layer maps these to status codes in one place (entrypoints/http/errors.py).
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs


@attrs.frozen
class Problem:
    """One thing wrong with an input: which field, and what."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" if self.field else self.message


class RtAnalyticsError(Exception):
    """Root of every error rtanalytics raises on purpose."""

    code = "error"

    def __init__(self, message: str, details: Sequence[Problem] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.details = tuple(details)


class ValidationError(RtAnalyticsError, ValueError):
    code = "invalid_request"

    @classmethod
    def of(cls, problems: Sequence[Problem]) -> ValidationError:
        """An error whose message lists every problem."""
        return cls("; ".join(str(p) for p in problems), problems)


class QueryTooLargeError(ValidationError):
    code = "query_too_large"


class PayloadTooLargeError(RtAnalyticsError, ValueError):
    code = "payload_too_large"


class NotFoundError(RtAnalyticsError, LookupError):
    code = "not_found"


class ConflictError(RtAnalyticsError):
    code = "conflict"


class LimitExceededError(RtAnalyticsError):
    code = "limit_exceeded"


class AuthError(RtAnalyticsError, PermissionError):
    code = "unauthorized"


class ForbiddenError(AuthError):
    code = "forbidden"


class BackendUnavailableError(RtAnalyticsError, ConnectionError):
    code = "backend_unavailable"


class DeliveryError(RtAnalyticsError, ConnectionError):
    code = "delivery_failed"
