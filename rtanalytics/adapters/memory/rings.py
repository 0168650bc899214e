"""Dense ring buffers of bucket states: one row per series, one column per bucket of a tier.

A column is reused when time moves a whole ring past it, so memory stays flat under a steady
load; `starts` says which bucket each column holds, and a read trusts a column only when its
start is the bucket asked for.
"""

from __future__ import annotations

import numpy as np

from rtanalytics.core.metrics import StateKind
from rtanalytics.core.sketches import add_identities_to_cells, add_to_cells
from rtanalytics.core.states import EMPTY, FIELDS, HAS_SKETCH
from rtanalytics.core.windows import Tier

_NO_BUCKET = np.iinfo(np.int64).min
_ALL_FIELDS = ("count", "sum", "min", "max", "last", "last_ts")


class Ring:
    """Bucket states of one tier for every row of a table.

    The fields of a bucket lie side by side (`data[row, column, field]`): a write touches one
    cache line per tier instead of one per field, which is what bounds ingest once the rings
    outgrow the CPU caches (bench/ingest_engine.py: ~2.0 -> ~1.1 us per point for 12,000 series).
    `arrays` holds a strided view of each field for reads.
    """

    __slots__ = ("arrays", "columns", "data", "field_offsets", "fields", "res", "sketches", "starts", "tier")

    def __init__(self, tier: Tier, kind: StateKind, capacity: int) -> None:
        self.tier = tier
        self.res = tier.resolution_s
        self.columns = tier.columns()
        self.fields = FIELDS[kind]
        # positions of count, sum, min, max, last, last_ts within a bucket (-1: not kept), for the C kernel
        self.field_offsets = tuple(self.fields.index(f) if f in self.fields else -1 for f in _ALL_FIELDS)
        self.starts = np.full(self.columns, _NO_BUCKET, dtype=np.int64)
        self.data = self._empty(capacity)
        self.arrays: dict[str, np.ndarray] = {}
        self._views()
        self.sketches: np.ndarray | None = (
            np.full((capacity, self.columns), None, dtype=object) if kind in HAS_SKETCH else None
        )

    def _empty(self, capacity: int) -> np.ndarray:
        """Rows not yet handed to a series are left unset: the table clears a row (clear_row)
        when it hands it out. Filling the new array when a table grew wrote all of it at once
        (the one-second ring of a table of 4,000 series grown by half: 1.2 GB), which stalled
        ingest for seconds in the service's first minute."""
        return np.empty((capacity, self.columns, len(self.fields)))

    def _views(self) -> None:
        self.arrays = {f: self.data[:, :, i] for i, f in enumerate(self.fields)}

    def row_bytes(self) -> int:
        """Bytes one more row costs: its buckets, and a pointer per bucket for sketch kinds."""
        return self.columns * (len(self.fields) * 8 + (8 if self.sketches is not None else 0))

    def grow(self, capacity: int) -> None:
        old = self.data.shape[0]
        bigger = self._empty(capacity)
        bigger[:old] = self.data
        self.data = bigger
        self._views()
        if self.sketches is not None:
            sketches = np.full((capacity, self.columns), None, dtype=object)
            sketches[:old] = self.sketches
            self.sketches = sketches

    def clear_row(self, row: int) -> None:
        self.data[row] = [EMPTY[f] for f in self.fields]
        if self.sketches is not None:
            self.sketches[row] = None

    def clear_column(self, col: int) -> None:
        self.data[:, col] = [EMPTY[f] for f in self.fields]
        if self.sketches is not None:
            self.sketches[:, col] = None

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
