"""Durations (`<int><unit>`, unit in ms s m h d) and timestamps (RFC 3339 or epoch seconds)."""

from __future__ import annotations

import functools
import math
import re
from datetime import UTC, datetime

_DURATION_RE = re.compile(r"^([0-9]{1,12})(ms|s|m|h|d)$")
_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}


def parse_duration(text: object) -> int:
    """Milliseconds in a duration such as `5m`; ValueError says what is accepted."""
    if not isinstance(text, str):
        raise ValueError(f"must be a duration string like '5m' (units ms s m h d), got {text!r}")
    match = _DURATION_RE.match(text)
    if match is None:
        raise ValueError(f"must be a duration like '5m' (an integer and one of ms s m h d), got {text!r}")
    ms = int(match.group(1)) * _UNIT_MS[match.group(2)]
    if ms <= 0:
        raise ValueError(f"must be longer than zero, got {text!r}")
    return ms


@functools.lru_cache(maxsize=1024)
def format_duration(ms: int) -> str:
    """The shortest exact spelling of a duration: 300000 -> '5m'. Cached: a result of 1,000
    groups spells the same window 1,000 times."""
    for unit in ("d", "h", "m", "s"):
        size = _UNIT_MS[unit]
        if ms % size == 0:
            return f"{ms // size}{unit}"
    return f"{ms}ms"


def parse_timestamp(value: object) -> float:
    """Epoch seconds from an RFC 3339 string or an int/float of epoch seconds."""
    if isinstance(value, bool):
        raise ValueError("must be an RFC 3339 string or epoch seconds, got a boolean")
    if isinstance(value, (int, float)):
        ts = float(value)
        if not math.isfinite(ts):
            raise ValueError("must be a finite number of epoch seconds")
        return ts
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise ValueError(
                f"must be an RFC 3339 timestamp such as 2024-01-01T00:00:00Z, got {value!r}"
            ) from None
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=UTC)
        return parsed.timestamp()
    raise ValueError(f"must be an RFC 3339 string or epoch seconds, got {type(value).__name__}")


def format_timestamp(ts: float) -> str:
    """RFC 3339 in UTC with a Z, milliseconds only when there are any."""
    moment = datetime.fromtimestamp(ts, tz=UTC)
    if moment.microsecond:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
