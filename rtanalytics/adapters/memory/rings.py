"""Dense ring buffers of bucket states: one row per series, one column per bucket of a tier.

A column is reused when time moves a whole ring past it, so memory stays flat under a steady
load; `starts` says which bucket each column holds, and a read trusts a column only when its
start is the bucket asked for.
"""

from __future__ import annotations

import numpy as np

from rtanalytics.core.metrics import StateKind
from rtanalytics.core.sketches import DistinctSketch, add_to_cells
from rtanalytics.core.states import EMPTY, FIELDS, HAS_SKETCH
from rtanalytics.core.windows import Tier

_NO_BUCKET = np.iinfo(np.int64).min


class Ring:
    """Bucket states of one tier for every row of a table."""

    __slots__ = ("arrays", "columns", "fields", "res", "sketches", "starts", "tier")

    def __init__(self, tier: Tier, kind: StateKind, capacity: int) -> None:
        self.tier = tier
        self.res = tier.resolution_s
        self.columns = tier.columns()
        self.fields = FIELDS[kind]
        self.starts = np.full(self.columns, _NO_BUCKET, dtype=np.int64)
        self.arrays = {f: np.full((capacity, self.columns), EMPTY[f]) for f in self.fields}
        self.sketches: np.ndarray | None = (
            np.full((capacity, self.columns), None, dtype=object) if kind in HAS_SKETCH else None
        )

    def grow(self, capacity: int) -> None:
        old = self.arrays["count"].shape[0]
        for f in self.fields:
            bigger = np.full((capacity, self.columns), EMPTY[f])
            bigger[:old] = self.arrays[f]
            self.arrays[f] = bigger
        if self.sketches is not None:
            sketches = np.full((capacity, self.columns), None, dtype=object)
            sketches[:old] = self.sketches
            self.sketches = sketches

    def clear_row(self, row: int) -> None:
        for f in self.fields:
            self.arrays[f][row] = EMPTY[f]
        if self.sketches is not None:
            self.sketches[row] = None

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
                for f in self.fields:
                    self.arrays[f][:, col] = EMPTY[f]
                if self.sketches is not None:
                    self.sketches[:, col] = None
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
        flat = rows * self.columns + cols
        a = self.arrays
        np.add.at(a["count"].reshape(-1), flat, 1.0)
        if "sum" in a:
            np.add.at(a["sum"].reshape(-1), flat, values)
        if "min" in a:
            np.minimum.at(a["min"].reshape(-1), flat, values)
            np.maximum.at(a["max"].reshape(-1), flat, values)
            last = a["last"].reshape(-1)
            last_ts = a["last_ts"].reshape(-1)
            order = np.lexsort((values, ts))
            flat_o, ts_o, val_o = flat[order], ts[order], values[order]
            held_ts, held = last_ts[flat_o], last[flat_o]
            newer = (ts_o > held_ts) | ((ts_o == held_ts) & (val_o > held))
            # Sorted ascending, so for a repeated cell the latest (largest) assignment lands last.
            last[flat_o[newer]] = val_o[newer]
            last_ts[flat_o[newer]] = ts_o[newer]
        if self.sketches is not None:
            add_to_cells(self.sketches.reshape(-1), flat, values)

    def add_identities(self, rows: np.ndarray, ts: np.ndarray, identities: list[str]) -> None:
        """Fold `unique` points (canonical identity strings) into their buckets."""
        buckets = (np.floor(ts / self.res).astype(np.int64)) * self.res
        cols, usable = self.claim(buckets)
        flat = rows * self.columns + cols
        np.add.at(self.arrays["count"].reshape(-1), flat[usable], 1.0)
        assert self.sketches is not None
        sketches = self.sketches.reshape(-1)
        for cell, identity, ok in zip(flat.tolist(), identities, usable.tolist()):
            if ok:
                sketch = sketches[cell]
                if sketch is None:
                    sketch = sketches[cell] = DistinctSketch()
                sketch.add(identity)
