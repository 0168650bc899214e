"""Binary encoding of bucket-state blocks: what the Ignite caches hold (no pickle).

A block is the state of many cells -- (series, bucket) pairs -- of one state kind, column by
column: series ids, bucket offsets, one float64 column per field of the kind, and, for the
sketch kinds, each cell's sketch in the sketch's own versioned format. Layout (little-endian):

    u8  format version (1)         u8  kind code (0 sum, 1 full, 2 quantile, 3 distinct, 9 totals)
    u32 n cells
    i64[n] series ids              i32[n] bucket offsets
    f64[n * fields] fields, cell by cell, in FIELDS order (totals: count, sum, last_write)
    sketch kinds only: u32[n] byte lengths, then the sketches one after another

A later release reads a version it knows and refuses a newer one with a clear error.
Blocks merge by the same rules as `BucketState`: counts and sums add, min/max fold, `last` is
the value with the latest timestamp (ties: the larger value), sketches merge.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence

import attrs
import numpy as np

from rtanalytics.core.metrics import StateKind
from rtanalytics.core.sketches import DistinctSketch, QuantileSketch
from rtanalytics.core.states import FIELDS, HAS_SKETCH

FORMAT_VERSION = 1
TOTALS = "totals"
TOTALS_FIELDS = ("count", "sum", "last_write")
_KIND_CODES: dict[str, int] = {
    StateKind.SUM: 0,
    StateKind.FULL: 1,
    StateKind.QUANTILE: 2,
    StateKind.DISTINCT: 3,
    TOTALS: 9,
}
_CODE_KINDS = {code: kind for kind, code in _KIND_CODES.items()}
_HEADER = struct.Struct("<BBI")

Sketch = QuantileSketch | DistinctSketch


def fields_of(kind: str) -> tuple[str, ...]:
    return TOTALS_FIELDS if kind == TOTALS else FIELDS[StateKind(kind)]


@attrs.define
class Block:
    """Cells of one kind; `sketches` is None for kinds without one, else one sketch per cell
    (decoded lazily from `sketch_bytes` when the block came off the wire)."""

    kind: str
    sids: np.ndarray  # int64
    offsets: np.ndarray  # int32
    values: np.ndarray  # float64 (n, fields)
    sketch_bytes: list[bytes] | None = None
    _sketches: list[Sketch] | None = None

    def __len__(self) -> int:
        return len(self.sids)

    @property
    def has_sketch(self) -> bool:
        return self.kind in HAS_SKETCH

    def sketches(self) -> list[Sketch]:
        if self._sketches is None:
            reader = DistinctSketch if self.kind == StateKind.DISTINCT else QuantileSketch
            self._sketches = [reader.from_bytes(b) for b in (self.sketch_bytes or [])]
        return self._sketches

    @classmethod
    def of(
        cls,
        kind: str,
        sids: np.ndarray,
        offsets: np.ndarray,
        values: np.ndarray,
        sketches: list[Sketch] | None,
    ) -> Block:
        return cls(kind, sids, offsets, values, None, sketches)

    def field(self, name: str) -> np.ndarray:
        column: np.ndarray = self.values[:, fields_of(self.kind).index(name)]
        return column


def encode(block: Block) -> bytes:
    n = len(block)
    parts = [
        _HEADER.pack(FORMAT_VERSION, _KIND_CODES[block.kind], n),
        np.ascontiguousarray(block.sids, dtype="<i8").tobytes(),
        np.ascontiguousarray(block.offsets, dtype="<i4").tobytes(),
        np.ascontiguousarray(block.values, dtype="<f8").tobytes(),
    ]
    if block.has_sketch:
        images = (
            block.sketch_bytes
            if block._sketches is None and block.sketch_bytes is not None
            else [s.to_bytes() for s in block.sketches()]
        )
        parts.append(np.array([len(b) for b in images], dtype="<u4").tobytes())
        parts.extend(images)
    return b"".join(parts)


def decode(data: bytes | bytearray | memoryview) -> Block:
    buf = bytes(data)
    version, code, n = _HEADER.unpack_from(buf)
    if version > FORMAT_VERSION:
        raise ValueError(f"block format {version} is newer than this release reads ({FORMAT_VERSION})")
    kind = _CODE_KINDS.get(code)
    if kind is None:
        raise ValueError(f"block kind code {code} is unknown")
    offset = _HEADER.size
    sids = np.frombuffer(buf, dtype="<i8", count=n, offset=offset)
    offset += 8 * n
    offsets = np.frombuffer(buf, dtype="<i4", count=n, offset=offset)
    offset += 4 * n
    width = len(fields_of(kind))
    values = np.frombuffer(buf, dtype="<f8", count=n * width, offset=offset).reshape(n, width)
    offset += 8 * n * width
    sketch_bytes = None
    if kind in HAS_SKETCH:
        lengths = np.frombuffer(buf, dtype="<u4", count=n, offset=offset).tolist()
        offset += 4 * n
        sketch_bytes = []
        for length in lengths:
            sketch_bytes.append(buf[offset : offset + length])
            offset += length
    return Block(kind, sids, offsets, values, sketch_bytes, None)


def merge(blocks: Sequence[Block]) -> Block:
    """One block with a cell per distinct (series, offset), folding duplicates."""
    blocks = [b for b in blocks if len(b)]
    if len(blocks) == 1:
        return blocks[0]
    if not blocks:
        raise ValueError("merge of no blocks")
    kind = blocks[0].kind
    names = fields_of(kind)
    sids = np.concatenate([b.sids for b in blocks])
    offsets = np.concatenate([b.offsets for b in blocks])
    values = np.concatenate([b.values for b in blocks])
    if "last_ts" in names:  # order within a cell by (last_ts, last): the final one wins
        lt, lv = names.index("last_ts"), names.index("last")
        order = np.lexsort((values[:, lv], values[:, lt], offsets, sids))
    else:
        order = np.lexsort((offsets, sids))
    sids, offsets, values = sids[order], offsets[order], values[order]
    starts = np.flatnonzero(np.r_[True, (sids[1:] != sids[:-1]) | (offsets[1:] != offsets[:-1])])
    ends = np.r_[starts[1:], len(sids)] - 1
    out = np.empty((len(starts), len(names)))
    for i, name in enumerate(names):
        column = values[:, i]
        if name in ("count", "sum"):
            out[:, i] = np.add.reduceat(column, starts)
        elif name == "min":
            out[:, i] = np.minimum.reduceat(column, starts)
        elif name in ("max", "last_write"):
            out[:, i] = np.maximum.reduceat(column, starts)
        else:  # last, last_ts: the cell's final entry in (last_ts, last) order
            out[:, i] = column[ends]
    sketches = None
    if kind in HAS_SKETCH:
        every = [s for b in blocks for s in b.sketches()]
        ordered = [every[i] for i in order.tolist()]
        sketches = []
        bounds = np.r_[starts, len(sids)].tolist()
        for a, b in itertools.pairwise(bounds):
            sketch = ordered[a].copy()
            for other in ordered[a + 1 : b]:
                sketch.merge(other)
            sketches.append(sketch)
    return Block.of(kind, sids[starts], offsets[starts], out, sketches)
