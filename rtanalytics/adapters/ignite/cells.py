"""From points to blocks, and from blocks into a query's (groups x slots) grid: pure numpy."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import attrs
import numpy as np

from rtanalytics.core.metrics import StateKind
from rtanalytics.core.planner import TierRead
from rtanalytics.core.sketches import DistinctSketch, quantile_sketches
from rtanalytics.core.states import Partials
from rtanalytics.core.windows import Tier

from .codec import TOTALS, Block, Sketch, fields_of


@attrs.frozen
class Points:
    """Accepted points of one metric, not yet in Ignite; `now` is when they were accepted."""

    kind: StateKind
    sids: np.ndarray  # int64
    ts: np.ndarray  # float64
    numeric: np.ndarray  # float64 (0 for distinct)
    identities: list[str] | None  # distinct only
    now: float


def blocks_for_tier(parts: Sequence[Points], tier: Tier, span: int) -> dict[int, Block]:
    """Cells of `tier` from the points, one block per chunk of `span` buckets (key: chunk start)."""
    if not parts:
        return {}
    kind = parts[0].kind
    # every part at once: a flush holds thousands of small parts (a metric of a request each),
    # where three numpy calls per part were most of blocks_for_tier's time
    sids = np.concatenate([p.sids for p in parts])
    ts = np.concatenate([p.ts for p in parts])
    vals = np.concatenate([p.numeric for p in parts])
    oldest = np.repeat([tier.oldest(p.now) for p in parts], [len(p.sids) for p in parts])
    bucket_f = np.floor(ts / tier.resolution_s) * tier.resolution_s
    keep = bucket_f >= oldest
    identities: list[str] | None = None
    if kind is StateKind.DISTINCT:
        identities = []
        for p in parts:
            assert p.identities is not None
            identities.extend(p.identities)
    if not keep.all():
        if not keep.any():
            return {}
        picked = np.flatnonzero(keep)
        sids, ts, vals, bucket_f = sids[picked], ts[picked], vals[picked], bucket_f[picked]
        if identities is not None:
            identities = [identities[i] for i in picked.tolist()]
    buckets = bucket_f.astype(np.int64)
    chunk_len = tier.resolution_s * span
    chunks = (buckets // chunk_len) * chunk_len
    offsets = ((buckets - chunks) // tier.resolution_s).astype(np.int32)
    # order cells by (chunk, series, offset), points in arrival order within a cell: one sort of
    # one int64 key (a five-key lexsort was the flush's largest cost)
    _, dense = np.unique(sids, return_inverse=True)
    chunk_no = (chunks - chunks.min()) // chunk_len
    order = np.argsort((chunk_no * (int(dense.max()) + 1) + dense) * span + offsets, kind="stable")
    sids, ts, vals, offsets, chunks = sids[order], ts[order], vals[order], offsets[order], chunks[order]
    new_cell = np.r_[
        True, (sids[1:] != sids[:-1]) | (offsets[1:] != offsets[:-1]) | (chunks[1:] != chunks[:-1])
    ]
    starts = np.flatnonzero(new_cell)
    lengths = np.diff(np.r_[starts, len(sids)])
    latest = np.maximum.reduceat(ts, starts)  # `last`: the latest point, ties to the larger value
    last = np.maximum.reduceat(np.where(ts == np.repeat(latest, lengths), vals, -np.inf), starts)
    names = fields_of(kind)
    values = np.empty((len(starts), len(names)))
    for i, name in enumerate(names):
        if name == "count":
            values[:, i] = lengths
        elif name == "sum":
            values[:, i] = np.add.reduceat(vals, starts)
        elif name == "min":
            values[:, i] = np.minimum.reduceat(vals, starts)
        elif name == "max":
            values[:, i] = np.maximum.reduceat(vals, starts)
        elif name == "last":
            values[:, i] = last
        elif name == "last_ts":
            values[:, i] = latest
    sketches: list[Sketch] | None = None
    if kind is StateKind.QUANTILE:
        sketches = list(quantile_sketches(vals, [*starts.tolist(), len(sids)]))
    elif kind is StateKind.DISTINCT:
        assert identities is not None
        ordered = [identities[i] for i in order.tolist()]
        sketches = []
        for a, b in zip(starts.tolist(), np.r_[starts[1:], len(sids)].tolist()):
            d = DistinctSketch()
            d.add_many(ordered[a:b])
            sketches.append(d)
    cell_chunks = chunks[starts]
    bounds = [*np.flatnonzero(np.r_[True, cell_chunks[1:] != cell_chunks[:-1]]).tolist(), len(starts)]
    out: dict[int, Block] = {}
    for a, b in itertools.pairwise(bounds):
        part = sketches[a:b] if sketches is not None else None
        out[int(cell_chunks[a])] = Block.of(kind, sids[starts[a:b]], offsets[starts[a:b]], values[a:b], part)
    return out


def totals_block(parts: Sequence[Points]) -> Block:
    """(count, sum, last write) per series of the points."""
    sids = np.concatenate([p.sids for p in parts])
    vals = np.concatenate([p.numeric for p in parts])
    ts = np.concatenate([p.ts for p in parts])
    order = np.argsort(sids, kind="stable")
    sids, vals, ts = sids[order], vals[order], ts[order]
    starts = np.flatnonzero(np.r_[True, sids[1:] != sids[:-1]])
    values = np.column_stack(
        (
            np.diff(np.r_[starts, len(sids)]).astype(np.float64),
            np.add.reduceat(vals, starts),
            np.maximum.reduceat(ts, starts),
        )
    )
    return Block.of(TOTALS, sids[starts], np.zeros(len(starts), dtype=np.int32), values, None)


class SeriesIndex:
    """Maps a query's series ids to its groups (sorted once per query)."""

    def __init__(self, series_ids: np.ndarray, groups: np.ndarray) -> None:
        order = np.argsort(series_ids, kind="stable")
        self.ids = series_ids[order]
        self.groups = groups[order]

    def find(self, sids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of sids the query asks for, their index into `ids`)."""
        if not len(self.ids):
            return np.zeros(len(sids), dtype=bool), np.zeros(0, dtype=np.int64)
        pos = np.searchsorted(self.ids, sids)
        pos[pos >= len(self.ids)] = 0
        hit = self.ids[pos] == sids
        return hit, pos[hit]


class SlotIndex:
    """Maps one tier read's bucket starts to their output slots (sorted once per read)."""

    def __init__(self, read: TierRead, tier: Tier) -> None:
        order = np.argsort(read.bucket_starts, kind="stable")
        self.starts = read.bucket_starts[order]
        self.slots = read.slots[order]
        self.resolution_s = tier.resolution_s

    def find(self, chunk_start: int, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(mask of the cells whose bucket the read asks for, the slot of each of those)."""
        buckets = chunk_start + offsets.astype(np.int64) * self.resolution_s
        pos = np.searchsorted(self.starts, buckets)
        pos[pos >= len(self.starts)] = 0
        hit = self.starts[pos] == buckets
        return hit, self.slots[pos[hit]]


def fold(
    out: Partials,
    block: Block,
    chunk_start: int,
    slots: SlotIndex,
    index: SeriesIndex,
    fields: frozenset[str] | None,
) -> None:
    """Add the block's cells that the read asks for into the grid."""
    if not len(block):
        return
    hit_s, pos = index.find(block.sids)
    if not hit_s.any():
        return
    hit_b, slot = slots.find(chunk_start, block.offsets)
    keep = hit_s & hit_b
    if not keep.any():
        return
    g = index.groups[pos[np.searchsorted(np.flatnonzero(hit_s), np.flatnonzero(keep))]]
    s = slot[np.searchsorted(np.flatnonzero(hit_b), np.flatnonzero(keep))]
    values = block.values[keep]
    names = fields_of(block.kind)
    f = out.fields

    def want(name: str) -> bool:
        return fields is None or name in fields

    for i, name in enumerate(names):
        if name in ("count", "sum") and (name == "count" or want(name)):
            np.add.at(f[name], (g, s), values[:, i])
        elif name == "min" and want(name):
            np.minimum.at(f[name], (g, s), values[:, i])
        elif name == "max" and want(name):
            np.maximum.at(f[name], (g, s), values[:, i])
    if "last" in names and want("last"):
        lv, lt = values[:, names.index("last")], values[:, names.index("last_ts")]
        o = np.lexsort((lv, lt, s, g))  # per (group, slot): the final entry has the latest (ts, value)
        go, so, lvo, lto = g[o], s[o], lv[o], lt[o]
        final = np.r_[(go[1:] != go[:-1]) | (so[1:] != so[:-1]), True]
        go, so, lvo, lto = go[final], so[final], lvo[final], lto[final]
        cur_t, cur_v = f["last_ts"][go, so], f["last"][go, so]
        take = (lto > cur_t) | ((lto == cur_t) & (lvo > cur_v))
        f["last_ts"][go[take], so[take]] = lto[take]
        f["last"][go[take], so[take]] = lvo[take]
    if out.sketches is not None and block.has_sketch and (fields is None or "sketch" in fields):
        sketches = block.sketches()
        for cell, gi, si in zip(np.flatnonzero(keep).tolist(), g.tolist(), s.tolist()):
            held = out.sketches[gi, si]
            if held is None:
                out.sketches[gi, si] = sketches[cell].copy()
            else:
                held.merge(sketches[cell])
