"""The query planner: which tier buckets answer each output bucket, exactly and without overlap.

A time-range query's output buckets are epoch-aligned windows; each is answered from the coarsest
tier whose resolution divides the window and which still keeps that bucket. A trailing window is
cut into aligned pieces, coarsest first, after its edges are snapped to a grid no coarser than
max(1 s, window / 60) (the allowed edge error), so a 1 h window costs ~60 one-minute reads rather
than 3,600 one-second ones.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import attrs
import numpy as np

from rtanalytics.core.durations import format_duration
from rtanalytics.core.errors import Problem, ValidationError
from rtanalytics.core.windows import Tier, align


@attrs.frozen
class TierRead:
    """Buckets of one tier to read, and the output slot each one adds into."""

    tier: int
    bucket_starts: np.ndarray = attrs.field(eq=False)  # int64, ascending within each slot
    slots: np.ndarray = attrs.field(eq=False)  # int64, non-decreasing


@attrs.frozen
class Plan:
    """Everything a store needs to read for one metric, and the output buckets it fills."""

    slot_starts: tuple[float, ...]
    window_s: int
    reads: tuple[TierRead, ...]
    resolution_s: int
    omitted: int = 0  # output buckets left out because they straddle a tier's retention edge

    @property
    def slots(self) -> int:
        return len(self.slot_starts)


def _read(tier: int, pieces: Sequence[tuple[int, int, int]], res: int) -> TierRead:
    """Bucket starts of [start, end) at `res`, each tagged with its piece's output slot."""
    starts = [np.arange(start, end, res, dtype=np.int64) for start, end, _ in pieces]
    slots = [np.full(len(s), slot, dtype=np.int64) for s, (_, _, slot) in zip(starts, pieces)]
    return TierRead(tier, np.concatenate(starts), np.concatenate(slots))


def range_buckets(start: float, end: float, window_s: int) -> int:
    """How many aligned windows the range [start, end) touches."""
    first = align(start, window_s)
    return max(0, -(-int(np.ceil(end - first)) // window_s))


def plan_range(start: float, end: float, window_s: int, now: float, tiers: Sequence[Tier]) -> Plan:
    """Output buckets are the aligned windows touching [start, end), each read whole."""
    first = align(start, window_s)
    count = range_buckets(start, end, window_s)
    slot_starts = [first + k * window_s for k in range(count)]
    by_tier: dict[int, list[tuple[int, int, int]]] = {}
    finest = max(t.resolution_s for t in tiers)
    coarse_oldest = tiers[-1].oldest(now)
    omitted = 0
    for slot, bucket in enumerate(slot_starts):
        if bucket < coarse_oldest:
            continue  # older than everything kept (wholly or in part): omitted from the answer
        choice = None
        straddles = False
        for index in range(len(tiers) - 1, -1, -1):
            tier = tiers[index]
            if window_s % tier.resolution_s == 0:
                if bucket >= tier.oldest(now):
                    choice = index
                    break
                straddles = straddles or bucket + window_s > tier.oldest(now)
        if choice is None:
            if straddles:
                omitted += 1  # its start has aged out of the tier that could answer it exactly
                continue
            raise ValidationError.of([Problem("window", _inexact_message(bucket, window_s, now, tiers))])
        by_tier.setdefault(choice, []).append((bucket, bucket + window_s, slot))
        finest = min(finest, tiers[choice].resolution_s)
    reads = tuple(_read(i, pieces, tiers[i].resolution_s) for i, pieces in sorted(by_tier.items()))
    return Plan(tuple(float(s) for s in slot_starts), window_s, reads, finest, omitted)


def _inexact_message(bucket: int, window_s: int, now: float, tiers: Sequence[Tier]) -> str:
    age = now - bucket
    usable = [t for t in tiers if bucket >= t.oldest(now)] or [tiers[-1]]
    finest = format_duration(usable[0].resolution_s * 1000)
    return (
        f"{format_duration(window_s * 1000)} cannot be answered exactly {age:.0f}s in the past: "
        f"data that old is kept at {finest} resolution; use a window that is a multiple of "
        f"{finest} or a later start_time"
    )


def plan_trailing(window_s: int, now: float, tiers: Sequence[Tier]) -> Plan:
    """One output bucket: the window ending now, each edge off by at most max(1 s, window/60).

    Both edges snap to a grid g (the coarsest resolution within that bound whose tier still
    keeps the start): the start to the nearest multiple of g, the end past `now`, so the bucket
    being filled counts.
    """
    start, end, grid = trailing_span(window_s, now, tiers)
    pieces: dict[int, list[tuple[int, int]]] = {}
    _cut(start, end, len(tiers) - 1, now, tiers, pieces)
    reads = tuple(
        _read(i, [(a, b, 0) for a, b in sorted(spans)], tiers[i].resolution_s)
        for i, spans in sorted(pieces.items())
    )
    finest = min((tiers[i].resolution_s for i in pieces), default=grid)
    return Plan((float(start),), window_s, reads, finest)


def trailing_span(window_s: int, now: float, tiers: Sequence[Tier]) -> tuple[int, int, int]:
    """The [start, end) plan_trailing reads for a window ending now, and the grid its start
    snapped to."""
    tolerance = max(1, window_s // 60)
    index = max(i for i, t in enumerate(tiers) if t.resolution_s <= tolerance)
    end_grid = tiers[index].resolution_s
    end = align(now, end_grid) + end_grid
    while True:
        grid = tiers[index].resolution_s
        start = math.floor((now - window_s) / grid + 0.5) * grid
        if start >= tiers[index].oldest(now) or index == len(tiers) - 1:
            return start, end, grid
        index += 1  # the start is older than this grid's tier keeps; answer it a tier coarser


def _cut(
    start: int, end: int, index: int, now: float, tiers: Sequence[Tier], out: dict[int, list[tuple[int, int]]]
) -> None:
    """Cover [start, end) with aligned buckets, coarsest tier first, finer tiers at the edges."""
    if start >= end or index < 0:
        return
    res = tiers[index].resolution_s
    lo = max(-(-start // res) * res, tiers[index].oldest(now))
    hi = (end // res) * res
    if lo >= hi:
        _cut(start, end, index - 1, now, tiers, out)
        return
    out.setdefault(index, []).append((lo, hi))
    _cut(start, lo, index - 1, now, tiers, out)
    _cut(hi, end, index - 1, now, tiers, out)
