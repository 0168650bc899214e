"""The in-memory metric store: real, bounded, and the embedded mode's only state.

Per tenant and state kind there is one table of series rows, with one `Ring` per tier. Writes
and reads are vectorised over whole batches; a read reduces (rows x columns) blocks to
(groups x slots) with numpy's reduceat after sorting rows by group.
"""

from __future__ import annotations

import itertools
from collections.abc import Hashable, Mapping, Sequence

import attrs
import numpy as np

from rtanalytics.config import physical_memory_bytes
from rtanalytics.core.metrics import KIND_OF_TYPE, MetricInfo, PointBatch, StateKind, Tags, series_key
from rtanalytics.core.planner import Plan
from rtanalytics.core.sketches import (
    LOG_GAMMA,
    MIN_INDEXABLE,
    SMALL_CELL,
    Cell,
    DistinctSketch,
    QuantileSketch,
    add_identities_to_cells,
    quantile_cell_sketch,
)
from rtanalytics.core.states import Partials
from rtanalytics.core.windows import Tier, default_tiers
from rtanalytics.ports.metric_store import GroupOf, SeriesSet, StoreStats, WatchRead

from .rings import Ring

try:  # the optional C write kernel (setup.py); rings.py's numpy code is the reference
    from rtanalytics.adapters.memory import _kernel  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _kernel = None

_INITIAL_ROWS = 64
_PHYSICAL_BYTES = physical_memory_bytes() or 2**34
_KINDS = list(StateKind)
_KIND_CODE = {kind: code for code, kind in enumerate(_KINDS)}
_KIND_BITS = 2
_KIND_MASK = (1 << _KIND_BITS) - 1
assert len(_KINDS) <= 1 << _KIND_BITS
MAX_WATCH_GROUPS = 1_000  # a standing aggregate with more groups is refused (queries then read series)
_NEVER = int(np.iinfo(np.int64).max)
_FOLDS = (("count", np.add), ("sum", np.add), ("min", np.minimum), ("max", np.maximum))  # how fields merge


@attrs.define(eq=False)
class _Watch:
    """A standing aggregate: one metric's series merged by group into rows of `derived`."""

    id: int
    name: str
    group_of: GroupOf
    rows: dict[Hashable, int] = attrs.field(factory=dict)  # group key -> row of the derived table
    members: set[int] = attrs.field(factory=set)  # rows of the metric's series it takes
    broken: bool = False  # a new group found no room: it can no longer answer
    seeded_from: int = _NEVER  # buckets from here on hold the points written before it started


class _Table:
    """Series rows of one state kind in one tenant."""

    def __init__(self, kind: StateKind, tiers: Sequence[Tier]) -> None:
        self.kind = kind
        self.capacity = 0  # rows come through MemoryMetricStore._can_grow, within the budget
        self.rings = [Ring(t, kind, self.capacity) for t in tiers]
        self.rows: dict[tuple[str, Tags], int] = {}
        self.keys: list[tuple[str, Tags] | None] = []
        self.free: list[int] = []
        self.last_write = np.zeros(self.capacity)
        self.totals = np.zeros((self.capacity, 2))  # count and sum of every point a series took
        self.by_name: dict[str, dict[Tags, int]] = {}
        self.series_cache: dict[str, SeriesSet] = {}
        # Standing aggregates (watches) of this table's metrics: their rows live in `derived`
        # (the finest tier only); watched[layer, row] is the derived row a series' points also
        # go to (-1: none), one layer per watch a series is in at once.
        self.watches: dict[str, list[_Watch]] = {}
        self.watched = np.full((0, self.capacity), -1, dtype=np.int64)
        self.derived: _Table | None = None

    def new_row(self, key: tuple[str, Tags]) -> int:
        if self.free:
            row = self.free.pop()
            self.keys[row] = key
        else:
            row = len(self.keys)
            self.keys.append(key)
            if row >= self.capacity:  # the store grows tables through _can_grow first
                self.grow(max(_INITIAL_ROWS, self.capacity * 2))
            for ring in self.rings:  # a row never used holds whatever memory held (Ring._view)
                ring.used = row + 1
                ring.clear_row(row)
        self.rows[key] = row
        self.by_name.setdefault(key[0], {})[key[1]] = row
        self.series_cache.pop(key[0], None)
        return row

    def grow(self, capacity: int, reserve: int = 0) -> None:
        """Room for `capacity` rows; `reserve`: the rows the table may come to hold (Ring.grow)."""
        self.capacity = capacity
        for ring in self.rings:
            ring.grow(capacity, reserve)
        grown = np.zeros(capacity)
        grown[: len(self.last_write)] = self.last_write
        self.last_write = grown
        totals = np.zeros((capacity, 2))
        totals[: len(self.totals)] = self.totals
        self.totals = totals
        watched = np.full((len(self.watched), capacity), -1, dtype=np.int64)
        watched[:, : self.watched.shape[1]] = self.watched
        self.watched = watched

    def send_to(self, row: int, drow: int) -> None:
        """Points of the series at `row` go to derived row `drow` as well."""
        free = np.flatnonzero(self.watched[:, row] < 0)
        if len(free):
            self.watched[free[0], row] = drow
        else:
            layer = np.full((1, self.capacity), -1, dtype=np.int64)
            layer[0, row] = drow
            self.watched = np.vstack((self.watched, layer))

    def leave(self, watch: _Watch) -> None:
        """Stop sending series to the watch's rows, and free them."""
        drows = np.array(list(watch.rows.values()), dtype=np.int64)
        for row in watch.members:
            column = self.watched[:, row]
            column[np.isin(column, drows)] = -1
        assert self.derived is not None
        for drow in drows.tolist():
            self.derived.drop_row(drow)
        watch.rows.clear()
        watch.members.clear()

    def drop_row(self, row: int) -> None:
        self.totals[row] = 0.0
        key = self.keys[row]
        assert key is not None
        if self.watched.shape[0]:
            self.watched[:, row] = -1
            for watch in self.watches.get(key[0], ()):
                watch.members.discard(row)
        del self.rows[key]
        named = self.by_name[key[0]]
        del named[key[1]]
        if not named:
            del self.by_name[key[0]]
        self.series_cache.pop(key[0], None)
        self.keys[row] = None
        for ring in self.rings:
            ring.clear_row(row)
        self.free.append(row)


class _SeriesCodes(dict[str, int]):
    """Series key -> row << _KIND_BITS | kind code. With the C kernel every change is mirrored
    into its table, where a batch's lookups are prefetched (`_kernel.lookup`)."""

    __slots__ = ("table",)

    def __init__(self) -> None:
        super().__init__()
        self.table = _kernel.code_table() if _kernel is not None else None

    def __setitem__(self, key: str, code: int) -> None:
        super().__setitem__(key, code)
        if self.table is not None:
            _kernel.code_set(self.table, key, code)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        if self.table is not None:
            _kernel.code_delete(self.table, key)


class _Tenant:
    def __init__(self) -> None:
        self.infos: dict[str, MetricInfo] = {}
        self.tables: dict[StateKind, _Table] = {}
        self.codes = _SeriesCodes()

    def series_count(self) -> int:
        return sum(len(t.rows) for t in self.tables.values())


def allow_fold_spin(allowed: bool) -> None:
    """Whether the C kernel's fold thread and the readers waiting for it may spin briefly before
    they sleep (they do only with two CPUs or more to run on). One setting for the process, as
    there is one fold thread: Config.fold_spin (RTA_FOLD_SPIN) for the service."""
    if _kernel is not None:
        _kernel.fold_allow_spin(allowed)


class MemoryMetricStore:
    """MetricStore in this process's memory, with the tier retentions of the Ignite design."""

    def __init__(
        self, tiers: Sequence[Tier] | None = None, *, native: bool = True, memory_budget: int | None = None
    ) -> None:
        self.tiers = tuple(tiers) if tiers is not None else default_tiers()
        self.memory_budget = memory_budget  # bytes the rings may take in all; None: no limit
        self.native = native  # False: the numpy reference path even where the C kernel is built
        self._tenants: dict[str, _Tenant] = {}
        self._watches: dict[int, tuple[_Table, _Watch]] = {}
        self._watch_ids = itertools.count(1)

    async def start(self) -> None:
        return None

    async def aclose(self) -> None:
        self.settle()
        return None

    def settle(self) -> None:
        """Wait for the folds queued on the worker thread (_kernel.fold_start). Every method that
        reads or changes the tables calls this first, so none sees a write half done; `write`
        only when it adds rows."""
        if _kernel is not None:
            _kernel.fold_wait()

    def _tenant(self, tenant: str) -> _Tenant:
        state = self._tenants.get(tenant)
        if state is None:
            state = self._tenants[tenant] = _Tenant()
        return state

    async def metrics(self, tenant: str) -> Mapping[str, MetricInfo]:
        self.settle()
        return dict(self._tenant(tenant).infos)

    async def claim(self, tenant: str, infos: Sequence[MetricInfo]) -> Mapping[str, MetricInfo]:
        self.settle()
        known = self._tenant(tenant).infos
        out = {}
        for info in infos:
            held = known.get(info.name)
            if held is None:
                held = known[info.name] = info
            elif held.type is info.type and held.window_ms != info.window_ms:
                held = known[info.name] = info  # a point's `window` updates the metric's window
            out[info.name] = held
        return out

    async def write(
        self, tenant: str, batch: PointBatch, now: float, max_series: int
    ) -> list[tuple[int, str]]:
        # Folds queued on the worker thread may still be going: they write only the rings,
        # totals and last writes of tables without cells, which nothing here reads, and a batch's
        # fold of such a table is queued after theirs. New rows (which may move a table's arrays)
        # wait for them (_admit).
        state = self._tenant(tenant)
        refused: list[tuple[int, str]] = []
        if _kernel is not None and self.native:
            code = np.empty(len(batch), dtype=np.int64)
            if _kernel.lookup(state.codes.table, batch.series, code):
                codes = code.tolist()
                refused = self._admit(state, batch, codes, max_series)
                code = np.array(codes, dtype=np.int64)
        else:
            get = state.codes.get
            codes = [get(key, -1) for key in batch.series]
            if -1 in codes:
                refused = self._admit(state, batch, codes, max_series)
            code = np.array(codes, dtype=np.int64)
        ts_all, numeric_all = batch.float_columns()
        kinds = (code & _KIND_MASK).astype(np.int8)  # numpy sorts 8-bit keys by radix: half timsort's time
        rows_all = code >> _KIND_BITS
        if refused:
            kinds[code < 0] = -1
        # Points of each kind as contiguous runs, in batch order within a kind (a stable sort:
        # float sums then add up in the same order as the numpy reference path's).
        counts = np.bincount(kinds + 1, minlength=len(_KINDS) + 1).tolist()  # [refused, kind 0, ...]
        present = [k for k in range(len(_KINDS)) if counts[k + 1]]
        whole = len(present) == 1 and counts[0] == 0
        if not whole:
            order = np.argsort(kinds, kind="stable")
            rows_all, ts_all, numeric_all = rows_all[order], ts_all[order], numeric_all[order]
            starts = np.cumsum(counts).tolist()
        native = _kernel is not None and self.native
        parts = []
        for kind_code in present:
            kind = _KINDS[kind_code]
            if whole:
                rows, ts, numeric, pick = rows_all, ts_all, numeric_all, None
            else:
                a, b = starts[kind_code], starts[kind_code + 1]
                pick = order[a:b]
                rows, ts, numeric = rows_all[a:b], ts_all[a:b], numeric_all[a:b]
            identities: list[str] | None = None
            if kind is StateKind.DISTINCT:
                identities = batch.values if pick is None else [batch.values[i] for i in pick.tolist()]
            table = state.tables[kind]
            worker = native and identities is None and table.rings[0].sketches is None
            parts.append((worker, table, rows, ts, numeric, identities))
        # Tables without quantile cells go to the worker thread first; the response and the next
        # request's parse go on meanwhile, and so do the folds below (quantile and unique cells,
        # watches: other arrays than the worker's). The next use of the store waits (settle).
        on_worker = [
            _fold_part(table, rows, ts, numeric, now)
            for worker, table, rows, ts, numeric, _ in parts
            if worker
        ]
        if on_worker:
            _kernel.fold_start(on_worker)
        for worker, table, rows, ts, numeric, identities in parts:
            if native and not worker:
                _fold_native(table, rows, ts, numeric, identities, now)
            elif not native:
                np.maximum.at(table.last_write, rows, ts)
                np.add.at(table.totals[:, 0], rows, 1.0)
                np.add.at(table.totals[:, 1], rows, numeric)
                _fold_numpy(table.rings, rows, ts, numeric, identities, now)
            if table.watches:
                self._fold_watched(table, rows, ts, numeric, identities, now)
        return refused

    def _fold_watched(
        self,
        table: _Table,
        rows: np.ndarray,
        ts: np.ndarray,
        numeric: np.ndarray,
        identities: list[str] | None,
        now: float,
    ) -> None:
        """The same points again into the derived rows of the watches their series are in."""
        parts = []
        for layer in table.watched:
            drows = layer[rows]
            pick = np.flatnonzero(drows >= 0)
            if len(pick):
                parts.append((drows[pick], pick))
        if not parts:
            return
        drows = np.concatenate([d for d, _ in parts])
        pick = np.concatenate([p for _, p in parts])
        ids = [identities[i] for i in pick.tolist()] if identities is not None else None
        derived = table.derived
        assert derived is not None
        if _kernel is not None and self.native:
            _fold_native(derived, drows, ts[pick], numeric[pick], ids, now)
        else:
            _fold_numpy(derived.rings, drows, ts[pick], numeric[pick], ids, now)

    def _admit(
        self, state: _Tenant, batch: PointBatch, codes: list[int], max_series: int
    ) -> list[tuple[int, str]]:
        """Create rows for new series (filling `codes`); return positions refused, with why."""
        self.settle()  # a table may grow: its arrays move, and queued folds hold the old ones
        refused: list[tuple[int, str]] = []
        total = state.series_count()
        for i, code in enumerate(codes):
            if code != -1:
                continue
            key = batch.series[i]
            known = state.codes.get(key)
            if known is not None:  # the same new series earlier in this batch
                codes[i] = known
                continue
            if total >= max_series:
                codes[i] = -2
                refused.append((i, f"the tenant has reached its limit of {max_series} active series"))
                continue
            kind = KIND_OF_TYPE[batch.types[i]]
            table = state.tables.get(kind)
            if table is None:
                table = state.tables[kind] = _Table(kind, self.tiers)
            if not table.free and len(table.keys) >= table.capacity and not self._can_grow(table):
                codes[i] = -2
                budget = (self.memory_budget or 0) // 2**20
                refused.append(
                    (i, f"the memory store's budget of {budget} MiB is full; raise RTA_MEMORY_BUDGET_MB")
                )
                continue
            row = table.new_row((batch.names[i], batch.tags[i]))
            codes[i] = state.codes[key] = (row << _KIND_BITS) | _KIND_CODE[kind]
            total += 1
            for watch in table.watches.get(batch.names[i], ()):
                self._join(table, watch, row, batch.tags[i])
        return refused

    # ---- standing aggregates -------------------------------------------------------------------

    async def watch(self, tenant: str, name: str, kind: StateKind, group_of: GroupOf) -> int | None:
        """A standing aggregate of `name`'s series merged by `group_of`, kept up to date by
        every write and seeded from the finest tier when a read first reaches back to a bucket
        (read_watch). This store sees every write (it is the only one), so it can; None when
        there is no room for it."""
        self.settle()
        state = self._tenant(tenant)
        table = state.tables.get(kind)
        if table is None:
            table = state.tables[kind] = _Table(kind, self.tiers)
        if table.derived is None:
            table.derived = _Table(kind, self.tiers[:1])
        watch = _Watch(next(self._watch_ids), name, group_of)
        for tags, row in table.by_name.get(name, {}).items():
            if not self._join(table, watch, row, tags):
                table.leave(watch)
                return None
        table.watches.setdefault(name, []).append(watch)
        self._watches[watch.id] = (table, watch)
        return watch.id

    async def read_watch(
        self, watch: int, start: int, end: int, fields: frozenset[str] | None = None
    ) -> WatchRead | None:
        self.settle()
        held = self._watches.get(watch)
        if held is None or held[1].broken:
            return None
        table, w = held
        derived = table.derived
        assert derived is not None
        if start < w.seeded_from:
            _seed(table, w, start)
        rows = np.fromiter(w.rows.values(), dtype=np.int64, count=len(w.rows))
        partials = _window(
            derived.rings[0], table.kind, rows, start, end, fields, self.native and _kernel is not None
        )
        return WatchRead(tuple(w.rows), partials, len(w.members))

    async def unwatch(self, watch: int) -> None:
        self.settle()
        held = self._watches.pop(watch, None)
        if held is None:
            return
        table, w = held
        table.leave(w)
        watches = table.watches[w.name]
        watches.remove(w)
        if not watches:
            del table.watches[w.name]

    def _join(self, table: _Table, watch: _Watch, row: int, tags: Tags) -> bool:
        """Send the series at `row` to its group's derived row too (a new group gets a row);
        False, and the watch is broken, when a new group finds no room."""
        key = watch.group_of(tags)
        if key is None or watch.broken:
            return not watch.broken
        drow = watch.rows.get(key)
        if drow is None:
            derived = table.derived
            assert derived is not None
            if len(watch.rows) >= MAX_WATCH_GROUPS or (
                not derived.free and len(derived.keys) >= derived.capacity and not self._can_grow(derived)
            ):
                watch.broken = True
                return False
            drow = watch.rows[key] = derived.new_row((f"\x00watch{watch.id}", (("group", repr(key)),)))
        table.send_to(row, drow)
        watch.members.add(row)
        return True

    def _can_grow(self, table: _Table) -> bool:
        """Whether the table may take more rows within the memory budget (growing it if so)."""
        row_bytes = sum(ring.row_bytes() for ring in table.rings)
        wanted = max(_INITIAL_ROWS, table.capacity // 2)  # grow by half: no doubling spikes
        if self.memory_budget is not None:
            room = (self.memory_budget - self.nbytes()) // row_bytes
            wanted = min(wanted, room)
        else:  # no budget: no ring can outgrow the machine
            room = _PHYSICAL_BYTES // row_bytes
        if wanted <= 0:
            return False
        table.grow(table.capacity + wanted, reserve=table.capacity + room)
        return True

    async def series(self, tenant: str, name: str) -> SeriesSet:
        self.settle()
        state = self._tenant(tenant)
        info = state.infos.get(name)
        table = state.tables.get(KIND_OF_TYPE[info.type]) if info is not None else None
        if table is None:
            return SeriesSet(np.zeros(0, dtype=np.int64), ())
        cached = table.series_cache.get(name)
        if cached is None:
            named = table.by_name.get(name, {})
            cached = SeriesSet(np.fromiter(named.values(), dtype=np.int64, count=len(named)), tuple(named))
            table.series_cache[name] = cached
        return cached

    async def aggregate(
        self,
        tenant: str,
        name: str,
        kind: StateKind,
        series_ids: np.ndarray,
        groups: np.ndarray,
        group_count: int,
        plan: Plan,
        fields: frozenset[str] | None = None,
    ) -> Partials:
        self.settle()
        table = self._tenant(tenant).tables.get(kind)
        if table is None:
            return Partials(kind, group_count, plan.slots)
        return _aggregate(
            table, kind, series_ids, groups, group_count, plan, fields, self.native and _kernel is not None
        )

    async def totals(self, tenant: str, name: str, series_ids: np.ndarray) -> np.ndarray:
        self.settle()
        info = self._tenant(tenant).infos.get(name)
        table = self._tenant(tenant).tables.get(KIND_OF_TYPE[info.type]) if info is not None else None
        if table is None or len(series_ids) == 0:
            return np.zeros((len(series_ids), 2))
        totals: np.ndarray = table.totals[series_ids]  # fancy indexing copies
        return totals

    async def evict(self, now: float) -> int:
        self.settle()
        horizon = self.tiers[-1].oldest(now)
        dropped = 0
        for state in self._tenants.values():
            for table in state.tables.values():
                used = np.array([k is not None for k in table.keys], dtype=bool)
                if not len(used):
                    continue
                stale = np.flatnonzero(used & (table.last_write[: len(used)] < horizon))
                for row in stale.tolist():
                    name, tags = table.keys[row]  # type: ignore[misc]
                    table.drop_row(row)
                    del state.codes[series_key(name, tags)]
                dropped += len(stale)
        return dropped

    async def stats(self) -> StoreStats:
        self.settle()
        return StoreStats(
            backend="memory",
            up=True,
            series_by_tenant={t: s.series_count() for t, s in self._tenants.items()},
            metrics_by_tenant={t: len(s.infos) for t, s in self._tenants.items()},
            details={"bytes": self.nbytes()},
        )

    def nbytes(self) -> int:
        """Bytes held by the rings' numpy arrays (sketch objects not included)."""
        total = 0
        for state in self._tenants.values():
            for table in state.tables.values():
                for part in (table, table.derived):
                    for ring in part.rings if part is not None else ():
                        total += ring.data.nbytes
                        if ring.sketches is not None:
                            total += ring.sketches.nbytes
        return total


def _fold_numpy(
    rings: Sequence[Ring],
    rows: np.ndarray,
    ts: np.ndarray,
    numeric: np.ndarray,
    ids: list[str] | None,
    now: float,
) -> None:
    """Points into every tier that keeps them, with numpy (the reference path)."""
    for ring in rings:
        keep = np.floor(ts / ring.res) * ring.res >= ring.tier.oldest(now)
        if not keep.any():
            continue
        if keep.all():
            r, t, v, kept_ids = rows, ts, numeric, ids
        else:
            r, t, v = rows[keep], ts[keep], numeric[keep]
            kept_ids = [x for x, k in zip(ids, keep.tolist()) if k] if ids is not None else None
        if kept_ids is None:
            ring.add(r, t, v)
        else:
            ring.add_identities(r, t, kept_ids)


def _aggregate(
    table: _Table,
    kind: StateKind,
    series_ids: np.ndarray,
    groups: np.ndarray,
    group_count: int,
    plan: Plan,
    fields: frozenset[str] | None,
    native: bool = False,
) -> Partials:
    """Bucket states of these rows merged per (group, plan slot) (MetricStore.aggregate)."""
    out = Partials(kind, group_count, plan.slots)
    if len(series_ids) == 0:
        return out
    if native and plan.slots == 1:
        for read in plan.reads:
            ring = table.rings[read.tier]
            cols = (read.bucket_starts // ring.res) % ring.columns
            _fold_one_slot(
                ring, kind, series_ids, groups, cols[ring.starts[cols] == read.bucket_starts], fields, out
            )
        return out
    order = np.argsort(groups, kind="stable")
    rows = series_ids[order]
    sorted_groups = groups[order]
    g_starts = _run_starts(sorted_groups)
    g_ids = sorted_groups[g_starts]
    g_lens = np.diff(g_starts, append=len(rows))
    for read in plan.reads:
        ring = table.rings[read.tier]
        cols = (read.bucket_starts // ring.res) % ring.columns
        held = ring.starts[cols] == read.bucket_starts
        if not held.any():
            continue
        cols, slots = cols[held], read.slots[held]
        s_starts = _run_starts(slots)
        s_ids = slots[s_starts]
        s_lens = np.diff(s_starts, append=len(cols))
        records = _gather(ring.data, rows, cols)  # (rows, columns, fields): one gather for every field
        position = {f: i for i, f in enumerate(ring.fields)}
        part = Partials(kind, group_count, plan.slots)
        cell = np.ix_(g_ids, s_ids)
        for field, fold in _FOLDS:
            if field in position and (fields is None or field in fields):
                sub = fold.reduceat(records[:, :, position[field]], s_starts, axis=1)
                part.fields[field][cell] = fold.reduceat(sub, g_starts, axis=0)
        if "last" in position and (fields is None or "last" in fields):
            ts_sub = records[:, :, position["last_ts"]]
            last_sub = records[:, :, position["last"]]
            t1 = np.maximum.reduceat(ts_sub, s_starts, axis=1)
            l1 = np.maximum.reduceat(
                np.where(ts_sub == np.repeat(t1, s_lens, axis=1), last_sub, -np.inf), s_starts, axis=1
            )
            t2 = np.maximum.reduceat(t1, g_starts, axis=0)
            l2 = np.maximum.reduceat(
                np.where(t1 == np.repeat(t2, g_lens, axis=0), l1, -np.inf), g_starts, axis=0
            )
            part.fields["last_ts"][cell] = t2
            part.fields["last"][cell] = l2
        if ring.sketches is not None and (fields is None or "sketch" in fields):
            assert part.sketches is not None
            _merge_cells(
                part.sketches,
                ring.sketches[np.ix_(rows, cols)],
                np.repeat(g_ids, g_lens),
                np.repeat(s_ids, s_lens),
                kind is StateKind.DISTINCT,
            )
        out.merge(part)
    return out


def _seed(table: _Table, watch: _Watch, start: int) -> None:
    """Set a watch's derived rows, in the buckets from `start` up to where it was last seeded
    (the future included the first time), to what its series hold there, merged per group.
    Setting, not adding: the series' rings already hold any point written since the watch began."""
    derived = table.derived
    assert derived is not None
    main, ring = table.rings[0], derived.rings[0]
    newer = np.flatnonzero(main.starts > ring.starts)  # buckets no derived row has had a point in
    for col in newer.tolist():
        ring.clear_column(col)
    ring.starts[newer] = main.starts[newer]
    cols = np.flatnonzero(
        (main.starts == ring.starts) & (main.starts >= start) & (main.starts < watch.seeded_from)
    )
    watch.seeded_from = start
    if not len(cols):
        return
    targets = set(watch.rows.values())
    members: dict[int, list[int]] = {}
    for row in sorted(watch.members):
        for drow in table.watched[:, row].tolist():
            if drow in targets:
                members.setdefault(drow, []).append(row)
    position = {f: i for i, f in enumerate(main.fields)}
    for drow, member_rows in members.items():
        rows = np.array(member_rows, dtype=np.int64)
        block = main.data[np.ix_(rows, cols)]  # (members, columns, fields)
        out = ring.data[drow]
        for field, fold in _FOLDS:
            if field in position:
                out[cols, position[field]] = fold.reduce(block[:, :, position[field]], axis=0)
        if "last" in position:
            latest, last = _latest(block[:, :, position["last_ts"]], block[:, :, position["last"]], axis=0)
            out[cols, position["last_ts"]] = latest
            out[cols, position["last"]] = last
        if main.sketches is not None:
            assert ring.sketches is not None
            cells = main.sketches[np.ix_(rows, cols)]
            r, c = np.nonzero(cells != None)  # noqa: E711
            if not len(c):
                continue
            order = np.argsort(c, kind="stable")
            r, c = r[order], c[order]
            starts = _run_starts(c).tolist()
            for a, b in zip(starts, [*starts[1:], len(c)]):
                run = cells[r[a:b], c[a]].tolist()
                ring.sketches[drow, cols[c[a]]] = _merged_cell(run, table.kind is StateKind.DISTINCT)


def _latest(stamps: np.ndarray, lasts: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """`last` of bucket states merged along an axis: the latest timestamp, ties to the larger value."""
    latest = stamps.max(axis=axis)
    return latest, np.where(stamps == np.expand_dims(latest, axis), lasts, -np.inf).max(axis=axis)


def _fold_one_slot(
    ring: Ring,
    kind: StateKind,
    rows: np.ndarray,
    groups: np.ndarray,
    cols: np.ndarray,
    fields: frozenset[str] | None,
    out: Partials,
) -> None:
    """Merge columns `cols` of `rows` into out[groups[i], 0] with the C kernel: one pass over
    the cells, without gathering the block or sorting rows into groups (group_by over 1,000
    series, a 5-minute window, in process: 1.33 -> 0.89 ms for the whole query)."""
    if not len(cols) or not len(rows):
        return
    f = out.fields
    names = ring.fields
    acc = np.empty((out.shape[0], len(names)))
    for i, name in enumerate(names):
        acc[:, i] = f[name][:, 0]
    rows = np.ascontiguousarray(rows, dtype=np.int64)
    groups = np.ascontiguousarray(groups, dtype=np.int64)
    _kernel.window_fold(ring.data, ring.columns, rows, groups, cols, ring.field_offsets, acc)
    for i, name in enumerate(names):
        if fields is None or name in fields or (name == "last_ts" and "last" in fields):
            f[name][:, 0] = acc[:, i]
    if ring.sketches is not None and (fields is None or "sketch" in fields):
        assert out.sketches is not None
        _merge_cells(
            out.sketches,
            ring.sketches[np.ix_(rows, cols)],
            groups,
            np.zeros(len(cols), dtype=np.int64),
            kind is StateKind.DISTINCT,
        )


def _window(
    ring: Ring,
    kind: StateKind,
    rows: np.ndarray,
    start: int,
    end: int,
    fields: frozenset[str] | None,
    native: bool = False,
) -> Partials:
    """The buckets of [start, end) of each row merged into one slot: (rows x 1) states. A few
    array calls on a contiguous run of columns; the general read (_aggregate) costs ~10x more."""
    out = Partials(kind, len(rows), 1)
    buckets = np.arange(start, end, ring.res, dtype=np.int64)
    cols = (buckets // ring.res) % ring.columns
    cols = cols[ring.starts[cols] == buckets]
    if not len(cols) or not len(rows):
        return out
    if native:
        _fold_one_slot(ring, kind, rows, np.arange(len(rows), dtype=np.int64), cols, fields, out)
        return out
    block = ring.data[rows[:, None], cols]  # (rows, columns, fields)
    position = {f: i for i, f in enumerate(ring.fields)}
    for field, fold in _FOLDS:
        if field in position and (fields is None or field in fields):
            out.fields[field][:, 0] = fold.reduce(block[:, :, position[field]], axis=1)
    if "last" in position and (fields is None or "last" in fields):
        latest, last = _latest(block[:, :, position["last_ts"]], block[:, :, position["last"]], axis=1)
        out.fields["last_ts"][:, 0] = latest
        out.fields["last"][:, 0] = last
    if ring.sketches is not None and (fields is None or "sketch" in fields):
        assert out.sketches is not None
        _merge_cells(
            out.sketches,
            ring.sketches[rows[:, None], cols],
            np.arange(len(rows)),
            np.zeros(len(cols), dtype=np.int64),
            kind is StateKind.DISTINCT,
        )
    return out


def _merged_cell(cells: list[Cell], distinct: bool) -> Cell:
    """One cell holding what all these hold (the cells themselves are left untouched)."""
    raw_type = set if distinct else list
    raw = [cell for cell in cells if type(cell) is raw_type]
    if len(raw) == len(cells):
        if distinct:
            identities: set[str] = set().union(*raw)  # type: ignore[arg-type]
            if len(identities) <= SMALL_CELL:
                return identities
            sketch = DistinctSketch()
            sketch.add_many(identities)
            return sketch
        values: list[float] = list(itertools.chain.from_iterable(raw))  # type: ignore[arg-type]
        return values if len(values) <= SMALL_CELL else quantile_cell_sketch(values)
    if not distinct:
        quantiles = QuantileSketch.merged([cell for cell in cells if isinstance(cell, QuantileSketch)])
        for values_cell in raw:
            quantiles.add_many(values_cell)  # type: ignore[arg-type]
        return quantiles
    distincts: DistinctSketch | None = None
    for cell in cells:
        if isinstance(cell, DistinctSketch):
            if distincts is None:
                distincts = cell.copy()
            else:
                distincts.merge(cell)
    assert distincts is not None
    for identities_cell in raw:
        distincts.add_many(identities_cell)  # type: ignore[arg-type]
    return distincts


def _fold_native(
    table: _Table,
    rows: np.ndarray,
    ts: np.ndarray,
    numeric: np.ndarray,
    ids: list[str] | None,
    now: float,
) -> None:
    """The same with the C kernel: one pass over the batch for every tier, the totals and the
    quantile cells; only `unique` identities are added to their cells here."""
    rings = table.rings
    cells = [np.empty(len(rows), dtype=np.int64) if ids is not None else None for _ in rings]
    bins = None
    if ids is None and table.rings[0].sketches is not None:
        bins = (SMALL_CELL, QuantileSketch, LOG_GAMMA, MIN_INDEXABLE)
    _kernel.fold(*_fold_part(table, rows, ts, numeric, now, cells), bins)
    if ids is not None:
        for ring, cell in zip(rings, cells):
            assert ring.sketches is not None and cell is not None
            add_identities_to_cells(ring.sketches.reshape(-1), cell.tolist(), ids)


def _fold_part(
    table: _Table,
    rows: np.ndarray,
    ts: np.ndarray,
    numeric: np.ndarray,
    now: float,
    cells: Sequence[np.ndarray | None] | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[tuple[object, ...]], np.ndarray, np.ndarray]:
    """The kernel's arguments for folding these points into `table` (the rows in use of each
    tier), as _kernel.fold takes them before `bins` and _kernel.fold_start takes each part.
    `cells`: per tier, an array the kernel fills with each point's cell (unique points)."""
    tiers: list[tuple[object, ...]] = []
    for t, ring in enumerate(table.rings):
        data, sketches = ring.in_use()
        cell = cells[t] if cells is not None else None
        tiers.append((ring.res, ring.tier.oldest(now), ring.starts, data, ring.field_offsets, cell, sketches))
    return (
        np.ascontiguousarray(rows),
        np.ascontiguousarray(ts),
        np.ascontiguousarray(numeric),
        tiers,
        table.last_write,
        table.totals,
    )


def _run_starts(values: np.ndarray) -> np.ndarray:
    """Where each run of equal values starts (np.r_ cost ~25 us a call on the query path)."""
    edges = np.empty(len(values), dtype=bool)
    if len(values):
        edges[0] = True
        np.not_equal(values[1:], values[:-1], out=edges[1:])
    return np.flatnonzero(edges)


def _merge_cells(
    out: np.ndarray, cells: np.ndarray, row_group: np.ndarray, col_slot: np.ndarray, distinct: bool
) -> None:
    """Fold the (rows x columns) cells into out[group, slot]. Sketch cells merge; the raw values
    of small cells are pooled per target and added in one call (a sketch per small cell cost a
    numpy call each: a percentile over 1,000 series x 60 one-second buckets took ~0.4 s). Cells
    are grouped by target with numpy, so Python touches each cell once, only to tell lists
    (or sets) from sketches."""
    r, c = np.nonzero(cells != None)  # noqa: E711
    if not len(r):
        return
    slots = out.shape[1]
    targets = row_group[r] * slots + col_slot[c]
    picked = cells[r, c]
    if len(targets) > 1 and (targets[1:] != targets[0]).any():
        order = np.argsort(targets, kind="stable")
        targets, picked = targets[order], picked[order]
    starts = _run_starts(targets).tolist()
    raw_type = set if distinct else list
    for a, b in zip(starts, [*starts[1:], len(targets)]):
        group, slot = divmod(int(targets[a]), slots)
        run = picked[a:b].tolist()
        small = [cell for cell in run if type(cell) is raw_type]
        held = out[group, slot]
        if len(small) < len(run) and not distinct:  # quantile sketches: their bins summed at once
            sketches = [cell for cell in run if type(cell) is not raw_type]
            held = out[group, slot] = QuantileSketch.merged(sketches if held is None else [held, *sketches])
        elif len(small) < len(run):
            for cell in run:
                if type(cell) is not raw_type:
                    if held is None:
                        held = out[group, slot] = cell.copy()
                    else:
                        held.merge(cell)
        if small:
            if held is None:
                held = out[group, slot] = DistinctSketch() if distinct else QuantileSketch()
            held.add_many(list(itertools.chain.from_iterable(small)))


def _gather(data: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """data[rows][:, cols] without an element-by-element gather when the columns are runs:
    a window's buckets are consecutive columns of the ring (wrapping at most once), so a row's
    part is one contiguous slice (current value: 0.24 -> ~0.05 ms). A trailing window read at
    two tiers has a few runs (its edges, with a gap where a second had no point): each run is
    copied as slices, and only many short runs take the element-by-element gather (group_by
    over 1,000 series with 43 columns in 4 runs: 1.06 -> 0.60 ms)."""
    if not len(cols):
        return data[np.ix_(rows, cols)]  # type: ignore[no-any-return]
    breaks = np.flatnonzero(np.diff(cols) != 1) + 1
    if len(breaks) == 0:
        return data[:, cols[0] : cols[-1] + 1][rows]  # type: ignore[no-any-return]
    if len(breaks) < _MAX_RUNS:
        bounds = [0, *breaks.tolist(), len(cols)]
        return np.concatenate(
            [data[:, cols[a] : cols[b - 1] + 1][rows] for a, b in itertools.pairwise(bounds)], axis=1
        )
    return data[np.ix_(rows, cols)]  # type: ignore[no-any-return]


# Past this many runs, slicing each costs more than the element-by-element gather (1,000 rows,
# runs of two columns: 16 runs 0.91 vs 1.02 ms, 24 runs 1.36 vs 1.07 ms)
_MAX_RUNS = 16
