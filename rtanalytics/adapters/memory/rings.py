"""Dense ring buffers of bucket states: one row per series, one column per bucket of a tier.

A column is reused when time moves a whole ring past it, so memory stays flat under a steady
load; `starts` says which bucket each column holds, and a read trusts a column only when its
start is the bucket asked for.
"""

from __future__ import annotations

import contextlib
import mmap
import platform
import sys

import numpy as np

from rtanalytics.core.metrics import StateKind
from rtanalytics.core.sketches import add_identities_to_cells, add_to_cells
from rtanalytics.core.states import EMPTY, FIELDS, HAS_SKETCH
from rtanalytics.core.windows import Tier

_NO_BUCKET = np.iinfo(np.int64).min
_ALL_FIELDS = ("count", "sum", "min", "max", "last", "last_ts")
# A ring this large takes its memory from a reserved address range, and grows in place.
RESERVE_FROM_BYTES = 32 * 2**20
# Linux's MAP_NORESERVE on the architectures that share its value (Python 3.11's mmap lacks the
# name): an untouched reservation is neither resident nor counted against overcommit.
_MAP_NORESERVE = (
    0x4000 if sys.platform.startswith("linux") and platform.machine() in ("x86_64", "aarch64") else None
)


def _nones(rows: int, columns: int) -> np.ndarray:
    """An object array of None. numpy's `empty` sets its items to None itself, ~10x faster than
    `full(..., None)` (20 against 226 ms for the one-second ring's sketches of 3,280 series)."""
    return np.empty((rows, columns), dtype=object)


def reserve_floats(count: int) -> np.ndarray:
    """`count` float64s of anonymous memory that takes pages only as they are first written.

    Views of it stay valid for as long as any exists (each holds the mapping), so a ring grows by
    taking a longer view: nothing is copied and no older view dangles.
    """
    assert _MAP_NORESERVE is not None
    mapping = mmap.mmap(-1, count * 8, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | _MAP_NORESERVE)
    # What numpy asks for its own large arrays: the fold's scattered writes miss the TLB less.
    with contextlib.suppress(AttributeError, OSError):  # a kernel without transparent huge pages
        mapping.madvise(mmap.MADV_HUGEPAGE)
    return np.frombuffer(mapping, dtype=np.float64)


class Ring:
    """Bucket states of one tier for every row of a table.

    The fields of a bucket lie side by side (`data[row, column, field]`): a write touches one
    cache line per tier instead of one per field, which is what bounds ingest once the rings
    outgrow the CPU caches (bench/ingest_engine.py: ~2.0 -> ~1.1 us per point for 12,000 series).
    `arrays` holds a strided view of each field for reads.
    """

    __slots__ = (
        "_base",
        "arrays",
        "columns",
        "data",
        "field_offsets",
        "fields",
        "res",
        "sketches",
        "starts",
        "tier",
        "used",
    )

    def __init__(self, tier: Tier, kind: StateKind, capacity: int) -> None:
        self.tier = tier
        self.res = tier.resolution_s
        self.columns = tier.columns()
        self.fields = FIELDS[kind]
        # positions of count, sum, min, max, last, last_ts within a bucket (-1: not kept), for the C kernel
        self.field_offsets = tuple(self.fields.index(f) if f in self.fields else -1 for f in _ALL_FIELDS)
        self.starts = np.full(self.columns, _NO_BUCKET, dtype=np.int64)
        # Rows handed to a series so far (the table's); the rest of `data` is unset memory that
        # no column reset touches: clearing a column over every row of a grown ring first
        # touched all of its new pages at once (up to 1.2 s of the fold, found by sampling the
        # event loop's stack while it waited for the worker).
        self.used = 0
        self._base = np.empty(capacity * self.columns * len(self.fields))  # `data` is a view of its start
        self.data = self._view(capacity)
        self.arrays: dict[str, np.ndarray] = {}
        self._views()
        self.sketches: np.ndarray | None = _nones(capacity, self.columns) if kind in HAS_SKETCH else None

    def _view(self, capacity: int) -> np.ndarray:
        """Rows not yet handed to a series are left unset: the table clears a row (clear_row)
        when it hands it out. Filling the new array when a table grew wrote all of it at once
        (the one-second ring of a table of 4,000 series grown by half: 1.2 GB), which stalled
        ingest for seconds in the service's first minute."""
        return self._base[: capacity * self.columns * len(self.fields)].reshape(
            capacity, self.columns, len(self.fields)
        )

    def _views(self) -> None:
        self.arrays = {f: self.data[:, :, i] for i, f in enumerate(self.fields)}

    def row_bytes(self) -> int:
        """Bytes one more row costs: its buckets, and a pointer per bucket for sketch kinds."""
        return self.columns * (len(self.fields) * 8 + (8 if self.sketches is not None else 0))

    def grow(self, capacity: int, reserve: int = 0) -> None:
        """Room for `capacity` rows. Once the ring is large (RESERVE_FROM_BYTES), its rows come
        from a range reserved for `reserve` rows (what the memory budget lets its table reach),
        and growing within it copies nothing. Copying the rows to a bigger array stalled ingest
        for up to 2.1 s a growth while the first 12,000 series arrived (10.5 s of the first 60
        batches' 12.1 s in bench/ingest_engine.py's warm-up)."""
        old = self.data.shape[0]
        per_row = self.columns * len(self.fields)
        if capacity * per_row > len(self._base):
            reserving = _MAP_NORESERVE is not None and capacity * per_row * 8 >= RESERVE_FROM_BYTES
            rows = max(capacity, reserve) if reserving else capacity
            base = reserve_floats(rows * per_row) if reserving else np.empty(rows * per_row)
            base[: old * per_row] = self._base[: old * per_row]
            self._base = base
        self.data = self._view(capacity)
        self._views()
        if self.sketches is not None:
            sketches = _nones(capacity, self.columns)
            sketches[:old] = self.sketches
            self.sketches = sketches

    def clear_row(self, row: int) -> None:
        self.data[row] = [EMPTY[f] for f in self.fields]
        if self.sketches is not None:
            self.sketches[row] = None

    def clear_column(self, col: int) -> None:
        self.data[: self.used, col] = [EMPTY[f] for f in self.fields]
        if self.sketches is not None:
            self.sketches[: self.used, col] = None

    def in_use(self) -> tuple[np.ndarray, np.ndarray | None]:
        """`data` and `sketches` of the rows in use, for the C kernel's fold (its column resets
        then stop there too)."""
        used = self.used
        return self.data[:used], (self.sketches[:used] if self.sketches is not None else None)

    def claim(self, buckets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Columns for these bucket starts, clearing columns that held an older bucket.

        Returns (columns, usable): a point is unusable only if its column holds a newer bucket,
        which happens when the clock went backwards by more than a ring.
        """
        cols = (buckets // self.res) % self.columns
        uniq, first = np.unique(cols, return_index=True)
        wanted = buckets[first]
        held = self.starts[uniq]
        stale = wanted > held
        if stale.any():
            for col in uniq[stale].tolist():
                self.clear_column(col)
            self.starts[uniq[stale]] = wanted[stale]
        if (wanted < held).any():
            usable = self.starts[cols] == buckets
            return cols, usable
        return cols, np.ones(len(cols), dtype=bool)

    def add(self, rows: np.ndarray, ts: np.ndarray, values: np.ndarray) -> None:
        """Fold numeric points (already retained by this tier) into their buckets."""
        buckets = (np.floor(ts / self.res).astype(np.int64)) * self.res
        cols, usable = self.claim(buckets)
        if not usable.all():
            rows, ts, values, cols = rows[usable], ts[usable], values[usable], cols[usable]
        cell = (rows, cols)
        a = self.arrays
        np.add.at(a["count"], cell, 1.0)
        if "sum" in a:
            np.add.at(a["sum"], cell, values)
        if "min" in a:
            np.minimum.at(a["min"], cell, values)
            np.maximum.at(a["max"], cell, values)
            order = np.lexsort((values, ts))
            rows_o, cols_o, ts_o, val_o = rows[order], cols[order], ts[order], values[order]
            held_ts, held = a["last_ts"][rows_o, cols_o], a["last"][rows_o, cols_o]
            newer = (ts_o > held_ts) | ((ts_o == held_ts) & (val_o > held))
            # Sorted ascending, so for a repeated cell the latest (largest) assignment lands last.
            a["last"][rows_o[newer], cols_o[newer]] = val_o[newer]
            a["last_ts"][rows_o[newer], cols_o[newer]] = ts_o[newer]
        if self.sketches is not None:
            add_to_cells(self.sketches.reshape(-1), rows * self.columns + cols, values)

    def add_identities(self, rows: np.ndarray, ts: np.ndarray, identities: list[str]) -> None:
        """Fold `unique` points (canonical identity strings) into their buckets."""
        buckets = (np.floor(ts / self.res).astype(np.int64)) * self.res
        cols, usable = self.claim(buckets)
        np.add.at(self.arrays["count"], (rows[usable], cols[usable]), 1.0)
        assert self.sketches is not None
        positions = np.where(usable, rows * self.columns + cols, -1)
        add_identities_to_cells(self.sketches.reshape(-1), positions.tolist(), identities)
