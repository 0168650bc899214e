"""Storage tiers and epoch-aligned windows.

Every point is written through to every tier whose retention covers its timestamp, so each tier
is complete for the span it keeps, and any window that is a whole number of a tier's resolution
can be answered exactly from that tier alone.
"""

from __future__ import annotations

import math

import attrs

FUTURE_SLACK_S = 600  # points up to 10 minutes ahead are accepted (SPEC §2)


@attrs.frozen
class Tier:
    """One resolution of rollup buckets and how long they are kept."""

    name: str
    resolution_s: int
    retention_s: int

    def bucket(self, ts: float) -> int:
        """Start of the bucket holding `ts`."""
        return math.floor(ts / self.resolution_s) * self.resolution_s

    def oldest(self, now: float) -> int:
        """Start of the oldest bucket this tier still answers for at `now`."""
        return self.bucket(now) - self.retention_s

    def columns(self) -> int:
        """Ring size that never lets two retained buckets share a slot."""
        return (self.retention_s + FUTURE_SLACK_S) // self.resolution_s + 2


RAW = "raw"
FINE = "fine"
COARSE = "coarse"
DEFAULT_COARSE_RETENTION_S = 30 * 86_400


def default_tiers(coarse_retention_s: int = DEFAULT_COARSE_RETENTION_S) -> tuple[Tier, ...]:
    """Finest first: 1 s buckets for an hour, 1 min for a day, 1 h for `coarse_retention_s`."""
    return (
        Tier(RAW, 1, 3_600),
        Tier(FINE, 60, 86_400),
        Tier(COARSE, 3_600, coarse_retention_s),
    )


def align(ts: float, window_s: int) -> int:
    """Start of the epoch-aligned window of `window_s` seconds holding `ts`."""
    return math.floor(ts / window_s) * window_s
