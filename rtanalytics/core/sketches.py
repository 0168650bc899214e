"""Mergeable sketches: quantiles with a relative value error bound, and distinct counts.

QuantileSketch is DDSketch (Masson, Rim, Lee, VLDB 2019) with the logarithmic mapping: a value
v > 0 falls in bin ceil(log_gamma(v)) with gamma = (1 + a) / (1 - a), and every quantile it
returns is within relative error `a` of the true value at that rank. It is written here rather
than taken from the `ddsketch` package because ingest adds whole batches at once: numpy computes
the bins of a batch in one call (see bench/sketches.py: ~0.2 us per value against ~2.3 us for
`DDSketch.add`). The unit tests check that both give the same quantiles on the same data.

DistinctSketch wraps Apache DataSketches' HLL (lg_k=14, relative standard error ~0.8%), which
starts exact (list and set modes) and switches to registers only when a bucket grows large.
"""

from __future__ import annotations

import itertools
import math
import struct
from collections.abc import Iterable, Sequence
from typing import Union, cast

import datasketches
import numpy as np

try:  # the optional C speedup (setup.py); merge_counts_numpy is the reference
    from rtanalytics.core import _speedups  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None

RELATIVE_ACCURACY = 0.01
_GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
LOG_GAMMA = math.log(_GAMMA)
# Values this close to zero share the zero bin; 1e-9 keeps bins of nanosecond-scale values.
MIN_INDEXABLE = 1e-9
_FORMAT_VERSION = 1
HLL_LG_K = 14
_FEW = 96  # values below which add_many adds them one by one (break-even ~100: 64 values 40 vs 50 us)


def merge_counts_numpy(bins: Sequence[dict[int, int]]) -> dict[int, int]:
    """The sum of dicts of bin -> count, keys ascending (the reference for the C merge_counts)."""
    size = sum(map(len, bins))
    if not size:
        return {}
    keys = np.fromiter(itertools.chain.from_iterable(bins), dtype=np.int64, count=size)
    counts = np.fromiter(
        itertools.chain.from_iterable(b.values() for b in bins), dtype=np.float64, count=size
    )
    low = int(keys.min())
    sums = np.bincount(keys - low, weights=counts)
    present = np.flatnonzero(sums)
    return dict(zip((present + low).tolist(), sums[present].astype(np.int64).tolist(), strict=True))


class QuantileSketch:
    """Counts of values per logarithmic bin, for positive and negative values, plus zeros."""

    __slots__ = ("count", "negative", "positive", "zero")

    def __init__(self) -> None:
        self.positive: dict[int, int] = {}
        self.negative: dict[int, int] = {}
        self.zero = 0
        self.count = 0

    def add(self, value: float) -> None:
        """Count one value."""
        self.count += 1
        if value > MIN_INDEXABLE:
            key = math.ceil(math.log(value) / LOG_GAMMA)
            self.positive[key] = self.positive.get(key, 0) + 1
        elif value < -MIN_INDEXABLE:
            key = math.ceil(math.log(-value) / LOG_GAMMA)
            self.negative[key] = self.negative.get(key, 0) + 1
        else:
            self.zero += 1

    def add_many(self, values: Sequence[float] | np.ndarray) -> None:
        """Count many values; the bins are computed in one numpy call, or value by value for a
        few (numpy's dozen calls cost ~40 us whatever the size: a live percentile read pools a
        few small cells each time)."""
        if len(values) < _FEW:
            for value in values.tolist() if isinstance(values, np.ndarray) else values:
                self.add(value)
            return
        arr = np.asarray(values, dtype=np.float64)
        if arr.size == 0:
            return
        self.count += int(arr.size)
        absolute = np.abs(arr)
        indexable = absolute > MIN_INDEXABLE
        self.zero += int(arr.size - np.count_nonzero(indexable))
        keys = np.zeros(arr.shape, dtype=np.int64)
        keys[indexable] = np.ceil(np.log(absolute[indexable]) / LOG_GAMMA)
        for store, mask in ((self.positive, arr > MIN_INDEXABLE), (self.negative, arr < -MIN_INDEXABLE)):
            if mask.any():
                uniq, counts = np.unique(keys[mask], return_counts=True)
                for key, n in zip(uniq.tolist(), counts.tolist()):
                    store[key] = store.get(key, 0) + n

    def merge(self, other: QuantileSketch) -> None:
        """Add another sketch's counts into this one."""
        for mine, theirs in ((self.positive, other.positive), (self.negative, other.negative)):
            for key, n in theirs.items():
                mine[key] = mine.get(key, 0) + n
        self.zero += other.zero
        self.count += other.count

    @classmethod
    def merged(cls, sketches: Sequence[QuantileSketch]) -> QuantileSketch:
        """One new sketch holding what all of these hold; their bins are summed in one pass, by
        the C speedup where it is built (a live percentile's 60 one-second sketches of ~250 bins:
        1.1 ms with numpy), else with numpy (~3x faster than merge() one by one)."""
        out = cls()
        for side in ("positive", "negative"):
            bins: list[dict[int, int]] = [getattr(sketch, side) for sketch in sketches]
            summed = _speedups.merge_counts(bins) if _speedups is not None else None
            setattr(out, side, summed if summed is not None else merge_counts_numpy(bins))
        out.zero = sum(sketch.zero for sketch in sketches)
        out.count = sum(sketch.count for sketch in sketches)
        return out

    def copy(self) -> QuantileSketch:
        out = QuantileSketch()
        out.positive = dict(self.positive)
        out.negative = dict(self.negative)
        out.zero = self.zero
        out.count = self.count
        return out

    def quantile(self, q: float) -> float | None:
        """The value at rank q * (count - 1), within the relative accuracy; None when empty."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """quantile(q) of each q, with one pass over the sorted bins."""
        if self.count == 0:
            return [None] * len(qs)
        out: list[float | None] = [None] * len(qs)
        pending = sorted(range(len(qs)), key=lambda i: qs[i])
        ranks = [qs[i] * (self.count - 1) for i in pending]
        seen = 0
        at = 0  # the next of `pending` to answer
        sides = (
            (sorted(self.negative, reverse=True), self.negative, -1.0),
            ([0], {0: self.zero}, 0.0),
            (sorted(self.positive), self.positive, 1.0),
        )
        for keys, counts, sign in sides:
            for key in keys:
                seen += counts[key]
                while at < len(pending) and seen > ranks[at]:
                    out[pending[at]] = sign * _bin_value(key) if sign else 0.0
                    at += 1
                if at == len(pending):
                    return out
        last = _bin_value(max(self.positive)) if self.positive else 0.0
        for i in pending[at:]:
            out[i] = last
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        return (self.positive, self.negative, self.zero, self.count) == (
            other.positive,
            other.negative,
            other.zero,
            other.count,
        )

    __hash__ = None  # type: ignore[assignment]

    def to_bytes(self) -> bytes:
        """Version byte, zero count, then (key, count) pairs of each side as little-endian int64s."""
        parts = [struct.pack("<BqII", _FORMAT_VERSION, self.zero, len(self.positive), len(self.negative))]
        for store in (self.positive, self.negative):
            if store:
                parts.append(np.array(sorted(store.items()), dtype="<i8").tobytes())
        return b"".join(parts)

    @classmethod
    def from_bytes(cls, data: bytes) -> QuantileSketch:
        """Read what `to_bytes` wrote (any format version up to this one)."""
        version, zero, n_pos, n_neg = struct.unpack_from("<BqII", data)
        if version > _FORMAT_VERSION:
            raise ValueError(f"quantile sketch format {version} is newer than this release reads")
        offset = struct.calcsize("<BqII")
        out = cls()
        out.zero = zero
        for n, store in ((n_pos, out.positive), (n_neg, out.negative)):
            if n:
                pairs = np.frombuffer(data, dtype="<i8", count=2 * n, offset=offset).reshape(n, 2)
                store.update(zip(pairs[:, 0].tolist(), pairs[:, 1].tolist()))
                offset += 16 * n
        out.count = zero + sum(out.positive.values()) + sum(out.negative.values())
        return out


# Rollup stores keep a sketch per bucket, and most 1-second buckets of a series hold a handful
# of points. Such a bucket ("cell") keeps its raw values -- a list of floats, or a set of
# identities -- and becomes a sketch only past SMALL_CELL values: creating a sketch per
# 1-second bucket cost ~0.8 us per point at ingest (bench/ingest_engine.py), a list append ~0.1.
SMALL_CELL = 32
Cell = Union[None, list[float], set[str], "QuantileSketch", "DistinctSketch"]


def add_to_cells(cells: np.ndarray, positions: np.ndarray, values: np.ndarray) -> None:
    """Add each value to the quantile cell at `cells[position]` (an object array)."""
    keys, signs = _bins(values)
    for position, value, key, sign in zip(positions.tolist(), values.tolist(), keys, signs):
        cell = cells[position]
        if cell is None:
            cells[position] = [value]
        elif type(cell) is list:
            cell.append(value)
            if len(cell) > SMALL_CELL:
                cells[position] = quantile_cell_sketch(cell)
        else:  # a QuantileSketch: its bin is already known
            cell.count += 1
            if sign > 0:
                cell.positive[key] = cell.positive.get(key, 0) + 1
            elif sign < 0:
                cell.negative[key] = cell.negative.get(key, 0) + 1
            else:
                cell.zero += 1


def quantile_cell_sketch(values: list[float]) -> QuantileSketch:
    """The sketch that replaces a small cell's list of values once it holds more than SMALL_CELL.

    One `add` per value (math.log): the memory store's C kernel promotes cells the same way with
    the same libm log, so both leave the same bins (numpy's log may differ in the last bit)."""
    sketch = QuantileSketch()
    for value in values:
        sketch.add(value)
    return sketch


def bin_keys(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each value's bin key and side (+1, -1, or 0 for the zero bin), in one numpy pass (int64s)."""
    absolute = np.abs(values)
    indexable = absolute > MIN_INDEXABLE
    keys = np.zeros(values.shape, dtype=np.int64)
    keys[indexable] = np.ceil(np.log(absolute[indexable]) / LOG_GAMMA)
    signs = np.where(indexable, np.sign(values), 0).astype(np.int64)
    return keys, signs


def _bins(values: np.ndarray) -> tuple[list[int], list[int]]:
    keys, signs = bin_keys(values)
    return cast(list[int], keys.tolist()), cast(list[int], signs.tolist())


def quantile_sketches(values: np.ndarray, bounds: Sequence[int]) -> list[QuantileSketch]:
    """One sketch per run values[bounds[i]:bounds[i + 1]]: the bins of every value in one numpy
    pass, then plain dict counts per run (most runs hold a few values, where numpy's per-call
    cost would dominate: 4 s -> 0.4 s for 384k points in bench/ignite_backend.py's flushes)."""
    keys, signs = _bins(values)
    out = []
    for a, b in itertools.pairwise(bounds):
        sketch = QuantileSketch()
        sketch.count = b - a
        positive, negative = sketch.positive, sketch.negative
        for key, sign in zip(keys[a:b], signs[a:b]):
            if sign > 0:
                positive[key] = positive.get(key, 0) + 1
            elif sign < 0:
                negative[key] = negative.get(key, 0) + 1
            else:
                sketch.zero += 1
        out.append(sketch)
    return out


def add_identities_to_cells(cells: np.ndarray, positions: Iterable[int], identities: Iterable[str]) -> None:
    """Add each identity to the distinct-count cell at `cells[position]`; negative positions skip."""
    for position, identity in zip(positions, identities):
        if position < 0:
            continue
        cell = cells[position]
        if cell is None:
            cells[position] = {identity}
        elif type(cell) is set:
            cell.add(identity)
            if len(cell) > SMALL_CELL:
                sketch = DistinctSketch()
                sketch.add_many(cell)
                cells[position] = sketch
        else:
            cell.add(identity)


def cell_sketch(cell: Cell, distinct: bool) -> QuantileSketch | DistinctSketch:
    """A new sketch holding what a cell holds (the cell itself is left untouched)."""
    if isinstance(cell, (QuantileSketch, DistinctSketch)):
        return cell.copy()
    sketch: QuantileSketch | DistinctSketch = DistinctSketch() if distinct else QuantileSketch()
    if cell:
        sketch.add_many(cell)  # type: ignore[arg-type]
    return sketch


def _bin_value(key: int) -> float:
    # The point of bin (gamma^(k-1), gamma^k] whose relative distance to both ends is `a`.
    return 2.0 * _GAMMA**key / (_GAMMA + 1)


class DistinctSketch:
    """A HyperLogLog distinct counter (Apache DataSketches), mergeable and compactly encoded."""

    __slots__ = ("_hll",)

    def __init__(self, hll: datasketches.hll_sketch | None = None) -> None:
        self._hll = (
            hll if hll is not None else datasketches.hll_sketch(HLL_LG_K, datasketches.tgt_hll_type.HLL_8)
        )

    def add(self, identity: str) -> None:
        """Count one thing, named by its canonical text."""
        self._hll.update(identity)

    def add_many(self, identities: Iterable[str]) -> None:
        update = self._hll.update
        for identity in identities:
            update(identity)

    def merge(self, other: DistinctSketch) -> None:
        """Fold another sketch into this one."""
        union = datasketches.hll_union(HLL_LG_K)
        union.update(self._hll)
        union.update(other._hll)
        self._hll = union.get_result(datasketches.tgt_hll_type.HLL_8)

    def copy(self) -> DistinctSketch:
        return DistinctSketch(datasketches.hll_sketch.deserialize(self._hll.serialize_updatable()))

    def estimate(self) -> float:
        """The estimated number of distinct things counted."""
        return float(self._hll.get_estimate())

    def to_bytes(self) -> bytes:
        """Version byte, then DataSketches' own compact HLL image (itself versioned)."""
        return bytes([_FORMAT_VERSION]) + bytes(self._hll.serialize_compact())

    @classmethod
    def from_bytes(cls, data: bytes) -> DistinctSketch:
        if data[0] > _FORMAT_VERSION:
            raise ValueError(f"distinct sketch format {data[0]} is newer than this release reads")
        return cls(datasketches.hll_sketch.deserialize(data[1:]))
