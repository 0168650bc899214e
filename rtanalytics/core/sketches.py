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

try:  # the optional C speedup (setup.py); merge_dense_numpy is the reference
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


# A side of a sketch (its positive or its negative values) is a dense store, as in DDSketch's
# reference implementation: a bytearray of native int64s, [low, n(low), n(low + 1), ...], the
# count of each bin key from `low` on; empty: b"". The C kernel adds to it in place, with one
# memory access a value where a dict of bins took five or six (the dict's table, its entry,
# the key and count objects; bench/ingest_engine.py: ~0.7 us a value of a percentile metric).
# It grows by _PAD bins beyond a new key, so a sketch filling in moves its bytes a few times.
# Its size is one int64 a bin between the smallest and largest key: ~115 bins per factor of 10
# of the values' spread, so 8 bytes x 115 x decades (1 us to 100 s: ~7 KB); at most ~36,500
# bins (1e-9 to 1.8e308), as the unbounded dense store of DDSketch's reference.
_PAD = 16
_EMPTY_COUNTS = np.zeros(0, dtype=np.int64)
_EMPTY_COUNTS.flags.writeable = False  # shared by every empty side


def _store(buf: bytearray) -> tuple[int, np.ndarray]:
    """(low, counts) of a side; `counts` is a view of `buf` (drop it before the side may grow:
    a bytearray with a view cannot be resized)."""
    if not buf:
        return 0, _EMPTY_COUNTS
    view = np.frombuffer(buf, dtype=np.int64)
    return int(view[0]), view[1:]


def _widen(buf: bytearray, lo: int, hi: int) -> int:
    """Make a side hold bins lo..hi (zero counts where new); return its low key."""
    if not buf:
        low = lo - _PAD
        buf[:] = np.concatenate([[low], np.zeros(hi - lo + 1 + 2 * _PAD, dtype=np.int64)]).tobytes()
        return low
    low = struct.unpack_from("=q", buf)[0]
    high = low + (len(buf) >> 3) - 2
    if lo < low:
        grow = low - lo + _PAD
        buf[8:8] = bytes(8 * grow)
        low -= grow
        struct.pack_into("=q", buf, 0, low)
    if hi > high:
        buf.extend(bytes(8 * (hi - high + _PAD)))
    return int(low)


def _nonzero(buf: bytearray) -> tuple[np.ndarray, np.ndarray]:
    """Keys (ascending) and counts of a side's bins that hold anything."""
    low, counts = _store(buf)
    at = np.flatnonzero(counts)
    return at + low, counts[at]


def _fill(buf: bytearray, keys: Sequence[int]) -> None:
    """Count one value in each of these bins of a side (few: plain int arithmetic)."""
    if not keys:
        return
    low = _widen(buf, min(keys), max(keys))
    view = memoryview(buf).cast("q")
    try:
        for key in keys:
            view[key - low + 1] += 1
    finally:
        view.release()


def _add_counts(buf: bytearray, low: int, counts: np.ndarray) -> None:
    """Add counts of bins low, low + 1, ... into a side."""
    at = np.flatnonzero(counts)
    if not len(at):
        return
    first, last = int(at[0]), int(at[-1])
    mine = _widen(buf, low + first, low + last)
    _, held = _store(buf)
    start = low + first - mine
    held[start : start + last - first + 1] += counts[first : last + 1]


def merge_dense_numpy(sides: Sequence[bytearray]) -> bytearray:
    """One side holding the sum of these (the reference for the C merge_dense)."""
    stores = [_store(buf) for buf in sides if buf]
    if not stores:
        return bytearray()
    lo = min(low for low, _ in stores)
    hi = max(low + len(counts) - 1 for low, counts in stores)
    total = np.zeros(hi - lo + 2, dtype=np.int64)
    for low, counts in stores:
        total[low - lo + 1 : low - lo + 1 + len(counts)] += counts
    total[0] = lo
    return bytearray(total.tobytes())


class QuantileSketch:
    """Counts of values per logarithmic bin, for positive and negative values, plus zeros."""

    __slots__ = ("count", "neg", "pos", "zero")

    def __init__(self) -> None:
        self.pos = bytearray()  # dense stores, see _store
        self.neg = bytearray()
        self.zero = 0
        self.count = 0

    @property
    def positive(self) -> dict[int, int]:
        """Bin key -> count of the positive values (bins that hold any), keys ascending."""
        keys, counts = _nonzero(self.pos)
        return dict(zip(keys.tolist(), counts.tolist(), strict=True))

    @property
    def negative(self) -> dict[int, int]:
        """Bin key -> count of the negative values' magnitudes, keys ascending."""
        keys, counts = _nonzero(self.neg)
        return dict(zip(keys.tolist(), counts.tolist(), strict=True))

    def add(self, value: float) -> None:
        """Count one value."""
        self.count += 1
        if value > MIN_INDEXABLE:
            _fill(self.pos, (math.ceil(math.log(value) / LOG_GAMMA),))
        elif value < -MIN_INDEXABLE:
            _fill(self.neg, (math.ceil(math.log(-value) / LOG_GAMMA),))
        else:
            self.zero += 1

    def _add_few(self, values: Iterable[float]) -> None:
        """add() of each value (math.log), each side's bins counted in one pass."""
        pos: list[int] = []
        neg: list[int] = []
        n = 0
        for value in values:
            n += 1
            if value > MIN_INDEXABLE:
                pos.append(math.ceil(math.log(value) / LOG_GAMMA))
            elif value < -MIN_INDEXABLE:
                neg.append(math.ceil(math.log(-value) / LOG_GAMMA))
        self.count += n
        self.zero += n - len(pos) - len(neg)
        _fill(self.pos, pos)
        _fill(self.neg, neg)

    def add_many(self, values: Sequence[float] | np.ndarray) -> None:
        """Count many values; the bins are computed in one numpy call, or value by value for a
        few (numpy's dozen calls cost ~40 us whatever the size: a live percentile read pools a
        few small cells each time)."""
        if len(values) < _FEW:
            self._add_few(values.tolist() if isinstance(values, np.ndarray) else values)
            return
        arr = np.asarray(values, dtype=np.float64)
        self.count += int(arr.size)
        absolute = np.abs(arr)
        indexable = absolute > MIN_INDEXABLE
        self.zero += int(arr.size - np.count_nonzero(indexable))
        keys = np.zeros(arr.shape, dtype=np.int64)
        keys[indexable] = np.ceil(np.log(absolute[indexable]) / LOG_GAMMA)
        for buf, mask in ((self.pos, arr > MIN_INDEXABLE), (self.neg, arr < -MIN_INDEXABLE)):
            side = keys[mask]
            if len(side):
                lo = int(side.min())
                _add_counts(buf, lo, np.bincount(side - lo))

    def merge(self, other: QuantileSketch) -> None:
        """Add another sketch's counts into this one."""
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            if theirs is mine:  # a sketch merged into itself: its own view would stop it growing
                theirs = bytearray(theirs)
            if theirs:
                low, counts = _store(theirs)
                _add_counts(mine, low, counts)
        self.zero += other.zero
        self.count += other.count

    @classmethod
    def merged(cls, sketches: Sequence[QuantileSketch]) -> QuantileSketch:
        """One new sketch holding what all of these hold; each side's bins are summed in one
        pass, by the C speedup where it is built (a live percentile's 60 one-second sketches),
        else with numpy."""
        out = cls()
        merge = _speedups.merge_dense if _speedups is not None else merge_dense_numpy
        out.pos = merge([sketch.pos for sketch in sketches])
        out.neg = merge([sketch.neg for sketch in sketches])
        out.zero = sum(sketch.zero for sketch in sketches)
        out.count = sum(sketch.count for sketch in sketches)
        return out

    def copy(self) -> QuantileSketch:
        out = QuantileSketch()
        out.pos = bytearray(self.pos)
        out.neg = bytearray(self.neg)
        out.zero = self.zero
        out.count = self.count
        return out

    def quantile(self, q: float) -> float | None:
        """The value at rank q * (count - 1), within the relative accuracy; None when empty."""
        return self.quantiles([q])[0]

    def quantiles(self, qs: Sequence[float]) -> list[float | None]:
        """quantile(q) of each q: the first bin, in the order of the values, whose running
        count passes the rank (one cumulative sum, one search for all of qs)."""
        if self.count == 0:
            return [None] * len(qs)
        neg_low, neg = _store(self.neg)
        pos_low, pos = _store(self.pos)
        # Values ascending: negative bins from the largest key down, the zeros, positive bins up.
        running = np.cumsum(np.concatenate([neg[::-1], [self.zero], pos]))
        found = np.searchsorted(running, [q * (self.count - 1) for q in qs], side="right").tolist()
        top = len(neg) + len(pos)  # the index of the last positive bin
        out: list[float | None] = []
        for at in found:
            if at > top:  # past every count (a rank rounded up): the largest positive bin's value
                keys, _ = _nonzero(self.pos)
                out.append(_bin_value(int(keys[-1])) if len(keys) else 0.0)
            elif at < len(neg):
                out.append(-_bin_value(neg_low + len(neg) - 1 - at))
            elif at == len(neg):
                out.append(0.0)
            else:
                out.append(_bin_value(pos_low + at - len(neg) - 1))
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantileSketch):
            return NotImplemented
        if (self.zero, self.count) != (other.zero, other.count):
            return False
        for mine, theirs in ((self.pos, other.pos), (self.neg, other.neg)):
            (k1, c1), (k2, c2) = _nonzero(mine), _nonzero(theirs)
            if not (np.array_equal(k1, k2) and np.array_equal(c1, c2)):
                return False
        return True

    __hash__ = None  # type: ignore[assignment]

    def to_bytes(self) -> bytes:
        """Version byte, zero count, then (key, count) pairs of each side's bins that hold
        anything, keys ascending, as little-endian int64s."""
        sides = [_nonzero(self.pos), _nonzero(self.neg)]
        parts = [struct.pack("<BqII", _FORMAT_VERSION, self.zero, len(sides[0][0]), len(sides[1][0]))]
        for keys, counts in sides:
            if len(keys):
                parts.append(np.stack([keys, counts], axis=1).astype("<i8").tobytes())
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
        out.count = zero
        for n, buf in ((n_pos, out.pos), (n_neg, out.neg)):
            if n:
                pairs = np.frombuffer(data, dtype="<i8", count=2 * n, offset=offset).reshape(n, 2)
                keys, counts = pairs[:, 0].astype(np.int64), pairs[:, 1].astype(np.int64)
                lo = int(keys.min())
                dense = np.zeros(int(keys.max()) - lo + 1, dtype=np.int64)
                np.add.at(dense, keys - lo, counts)
                _add_counts(buf, lo, dense)
                out.count += int(counts.sum())
                offset += 16 * n
        return out


# Rollup stores keep a sketch per bucket, and most 1-second buckets of a series hold a handful
# of points. Such a bucket ("cell") keeps its raw values -- a list of floats, or a set of
# identities -- and becomes a sketch only past SMALL_CELL values: creating a sketch per
# 1-second bucket cost ~0.8 us per point at ingest (bench/ingest_engine.py), a list append ~0.1.
SMALL_CELL = 32
Cell = Union[None, list[float], set[str], "QuantileSketch", "DistinctSketch"]


def add_to_cells(cells: np.ndarray, positions: np.ndarray, values: np.ndarray) -> None:
    """Add each value to the quantile cell at `cells[position]` (an object array). A sketch
    counts the value's bin by math.log (`add`), as the memory store's C kernel does with libm's
    log: numpy's log may differ in the last bit, and both must count the same bins."""
    for position, value in zip(positions.tolist(), values.tolist()):
        cell = cells[position]
        if cell is None:
            cells[position] = [value]
        elif type(cell) is list:
            cell.append(value)
            if len(cell) > SMALL_CELL:
                cells[position] = quantile_cell_sketch(cell)
        else:
            cell.add(value)


def quantile_cell_sketch(values: list[float]) -> QuantileSketch:
    """The sketch that replaces a small cell's list of values once it holds more than SMALL_CELL.

    One `add` per value (math.log): the memory store's C kernel promotes cells the same way with
    the same libm log, so both leave the same bins (numpy's log may differ in the last bit)."""
    sketch = QuantileSketch()
    sketch._add_few(values)
    return sketch


def _bins(values: np.ndarray) -> tuple[list[int], list[int]]:
    """Each value's bin key and side (+1, -1, or 0 for the zero bin), in one numpy pass."""
    absolute = np.abs(values)
    indexable = absolute > MIN_INDEXABLE
    keys = np.zeros(values.shape, dtype=np.int64)
    keys[indexable] = np.ceil(np.log(absolute[indexable]) / LOG_GAMMA)
    signs = np.where(indexable, np.sign(values), 0).astype(np.int64)
    return cast(list[int], keys.tolist()), cast(list[int], signs.tolist())


def quantile_sketches(values: np.ndarray, bounds: Sequence[int]) -> list[QuantileSketch]:
    """One sketch per run values[bounds[i]:bounds[i + 1]]: the bins of every value in one numpy
    pass, then plain int counts per run (most runs hold a few values, where numpy's per-call
    cost would dominate: 4 s -> 0.4 s for 384k points in bench/ignite_backend.py's flushes)."""
    keys, signs = _bins(values)
    out = []
    for a, b in itertools.pairwise(bounds):
        sketch = QuantileSketch()
        sketch.count = b - a
        pos = [key for key, sign in zip(keys[a:b], signs[a:b]) if sign > 0]
        neg = [key for key, sign in zip(keys[a:b], signs[a:b]) if sign < 0]
        sketch.zero = b - a - len(pos) - len(neg)
        _fill(sketch.pos, pos)
        _fill(sketch.neg, neg)
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
