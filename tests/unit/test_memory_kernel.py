"""The memory store's C write kernel leaves exactly what its numpy reference path leaves."""

from __future__ import annotations

import asyncio
import gc
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from rtanalytics.adapters.memory import metric_store, rings
from rtanalytics.adapters.memory.metric_store import MemoryMetricStore
from rtanalytics.core.metrics import KIND_OF_TYPE, MetricInfo, MetricType, PointBatch, StateKind
from rtanalytics.core.sketches import cell_sketch
from rtanalytics.core.windows import Tier

pytestmark = pytest.mark.skipif(metric_store._kernel is None, reason="the C kernel is not built here")

NOW = 1_700_000_000.0
# Small rings, so that columns wrap and get reset within a test
TIERS = (Tier("raw", 1, 30), Tier("fine", 10, 120), Tier("coarse", 60, 600))
TYPES = [MetricType.SUM, MetricType.AVERAGE, MetricType.PERCENTILE, MetricType.UNIQUE]

point = st.tuples(
    st.sampled_from(range(len(TYPES))),
    st.sampled_from(["a", "b", "c"]),
    st.one_of(  # seconds from NOW: old, current, future; and some the same, so that `last` ties
        st.floats(min_value=-700, max_value=600), st.sampled_from([-3.0, -1.0, 0.0])
    ),
    st.one_of(  # few distinct values (cells fill up and become sketches), and any value
        st.integers(min_value=-5, max_value=5).map(float),
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False),
    ),
)


def as_batch(points: list[tuple[int, str, float, float]]) -> PointBatch:
    batch = PointBatch()
    for i, (t, tag, offset, value) in enumerate(points):
        mtype = TYPES[t]
        batch.add(
            i,
            f"m{t}",
            mtype,
            (("k", tag),),
            NOW + offset,
            str(int(value)) if mtype is MetricType.UNIQUE else value,
        )
    return batch


@given(
    st.lists(st.lists(point, max_size=25), max_size=4),
    st.lists(st.floats(min_value=0, max_value=200), max_size=4),
)
def test_kernel_and_numpy_paths_agree(batches: list, steps: list) -> None:
    stores = [MemoryMetricStore(TIERS, native=True), MemoryMetricStore(TIERS, native=False)]

    async def run() -> None:
        now = NOW
        for store in stores:
            await store.claim("t", [MetricInfo(f"m{t}", mtype) for t, mtype in enumerate(TYPES)])
        for k, points in enumerate(batches):
            now += steps[k] if k < len(steps) else 0.0
            for store in stores:
                await store.write("t", as_batch(points), now, 1_000)

    asyncio.run(run())
    for store in stores:
        store.settle()  # the worker thread's fold of the last batch, before reading the tables
    native, reference = (s._tenants.get("t") for s in stores)
    if native is None:
        assert reference is None
        return
    assert set(native.tables) == set(reference.tables)
    for kind, table in native.tables.items():
        other = reference.tables[kind]
        used = len(table.keys)  # rows past these were never handed out: their memory is unset
        assert used == len(other.keys)
        for ring, ring_ref in zip(table.rings, other.rings):
            assert np.array_equal(ring.starts, ring_ref.starts)
            live = ring.starts != np.iinfo(np.int64).min
            assert np.array_equal(ring.data[:used, live], ring_ref.data[:used, live])
            if ring.sketches is not None:
                distinct = kind.value == "distinct"
                for a, b in zip(ring.sketches[:used, live].ravel(), ring_ref.sketches[:used, live].ravel()):
                    assert (a is None) == (b is None)
                    if a is not None:
                        sa, sb = cell_sketch(a, distinct), cell_sketch(b, distinct)
                        if distinct:
                            assert sa.estimate() == sb.estimate()
                        else:
                            assert sa == sb


@given(
    st.integers(min_value=1, max_value=40),
    st.integers(min_value=0, max_value=39),
    st.lists(st.integers(min_value=0, max_value=9), min_size=1, max_size=5),
    st.sampled_from(["run", "wrapped", "runs", "any"]),
    st.data(),
)
def test_gather_equals_the_elementwise_gather(length: int, start: int, rows: list, shape: str, data) -> None:
    from rtanalytics.adapters.memory.metric_store import _gather

    ring = np.arange(10 * 40 * 3, dtype=np.float64).reshape(10, 40, 3)
    if shape == "any":
        cols = np.array(data.draw(st.lists(st.integers(min_value=0, max_value=39), min_size=1, max_size=12)))
    elif shape == "runs":  # ascending with gaps, as a read at two tiers with empty seconds has
        cols = np.array(sorted(data.draw(st.sets(st.integers(min_value=0, max_value=39), min_size=1))))
    else:
        cols = (
            (start + np.arange(min(length, 40))) % 40
            if shape == "wrapped"
            else np.arange(start, min(40, start + length))
        )
    picked = np.array(rows)
    assert np.array_equal(_gather(ring, picked, cols), ring[np.ix_(picked, cols)])


@given(st.lists(st.floats(min_value=-1e6, max_value=1e6), min_size=30, max_size=120), st.integers(1, 4))
def test_kernel_grows_small_cells_into_sketches_as_the_numpy_path_does(values: list, batches: int) -> None:
    """Past SMALL_CELL values a cell becomes a sketch; the C kernel then counts bins in place."""
    stores = [MemoryMetricStore(TIERS, native=True), MemoryMetricStore(TIERS, native=False)]

    async def run() -> None:
        for store in stores:
            await store.claim("t", [MetricInfo("p", MetricType.PERCENTILE)])
            for k in range(batches):
                batch = PointBatch()
                for i, v in enumerate(values):
                    batch.add(i, "p", MetricType.PERCENTILE, (("k", "a"),), NOW + k * 0.01, v)
                await store.write("t", batch, NOW + 1, 1_000)

    asyncio.run(run())
    native, reference = (s._tenants["t"].tables[KIND_OF_TYPE[MetricType.PERCENTILE]] for s in stores)
    for ring, ring_ref in zip(native.rings, reference.rings):
        cells = [c for c in ring.sketches.ravel() if c is not None]
        cells_ref = [c for c in ring_ref.sketches.ravel() if c is not None]
        assert len(cells) == len(cells_ref) == 1
        assert type(cells[0]) is type(cells_ref[0])
        assert cell_sketch(cells[0], False) == cell_sketch(cells_ref[0], False)
        # a cell the kernel made (list or sketch) is left out of the cyclic collector's walks
        assert not gc.is_tracked(cells[0])
    assert np.array_equal(native.totals, reference.totals)
    assert np.array_equal(native.last_write, reference.last_write)


@given(
    st.lists(point, max_size=30),
    st.lists(point, min_size=1, max_size=30),
    st.sampled_from([0, 25, 130, 700, 1000]),  # raw columns come round every 632 s, fine every 740 s
    st.sampled_from([1, 7, 30, 90, 300]),
    st.sampled_from(["all", "some"]),
    st.lists(st.integers(min_value=0, max_value=2), min_size=3, max_size=3),
)
# a point 632 s back lies in the raw column the window's second before now reads: stale there
@example([(1, "a", -2.0, 3.0)], [(1, "b", -200.0, 1.0)], 632, 7, "all", [0, 0, 0])
def test_one_slot_reads_agree(
    earlier: list, points: list, ago: float, window: int, which: str, group_of: list
) -> None:
    """A trailing window (one slot) goes through the C kernel's window_fold where it is built;
    it answers what the numpy read answers, for up to three groups and for one group (a
    current value). Points written `ago` seconds earlier leave columns that hold other buckets
    than the window's."""
    from rtanalytics.core.planner import plan_trailing

    native, numpy_only = MemoryMetricStore(TIERS, native=True), MemoryMetricStore(TIERS, native=False)

    async def run() -> list[tuple]:
        plan = plan_trailing(window, NOW, TIERS)
        out = []
        for store in (native, numpy_only):
            await store.claim("t", [MetricInfo(f"m{t}", mtype) for t, mtype in enumerate(TYPES)])
            await store.write("t", as_batch([(t, k, o - ago, v) for t, k, o, v in earlier]), NOW - ago, 1_000)
            await store.write("t", as_batch(points), NOW, 1_000)
        for t, mtype in enumerate(TYPES):
            series = await native.series("t", f"m{t}")
            ids = series.ids if which == "all" else series.ids[::2]
            kind = KIND_OF_TYPE[mtype]
            zeros = np.zeros(len(ids), dtype=np.int64)
            groups = np.array([group_of[i % 3] for i in range(len(ids))], dtype=np.int64)
            by_kernel = await native.aggregate("t", f"m{t}", kind, ids, groups, 3, plan)
            by_numpy = await numpy_only.aggregate("t", f"m{t}", kind, ids, groups, 3, plan)
            out.append((kind, by_kernel, by_numpy, range(3)))
            one_by_kernel = await native.aggregate("t", f"m{t}", kind, ids, zeros, 1, plan)
            one_by_numpy = await numpy_only.aggregate("t", f"m{t}", kind, ids, zeros, 1, plan)
            out.append((kind, one_by_kernel, one_by_numpy, range(1)))
        return out

    for kind, got, want, groups in asyncio.run(run()):
        for g in groups:
            for field, values in got.fields.items():
                assert np.allclose(values[g], want.fields[field][g], rtol=1e-12, atol=0), (field, g)
            if got.sketches is not None:
                a, b = got.sketches[g, 0], want.sketches[g, 0]
                assert (a is None) == (b is None)
                if a is not None:
                    if kind.value == "distinct":
                        assert a.estimate() == b.estimate()
                    else:
                        assert a == b


def test_one_slot_last_ties_go_to_the_larger_value() -> None:
    """Two series of one group with a point at the same moment: `last` is the larger value,
    whichever series comes first, on both paths."""
    from rtanalytics.core.planner import plan_trailing

    async def last_of(store: MemoryMetricStore, values: tuple[float, float]) -> float:
        await store.claim("t", [MetricInfo("m1", MetricType.AVERAGE)])
        await store.write("t", as_batch([(1, "a", -1.0, values[0]), (1, "b", -1.0, values[1])]), NOW, 1_000)
        series = await store.series("t", "m1")
        ids = np.asarray(series.ids, dtype=np.int64)
        plan = plan_trailing(60, NOW, TIERS)
        got = await store.aggregate(
            "t", "m1", StateKind.FULL, ids, np.zeros(len(ids), dtype=np.int64), 1, plan
        )
        return float(got.fields["last"][0, 0])

    for native in (True, False):
        for values in ((1.0, 2.0), (2.0, 1.0)):
            assert asyncio.run(last_of(MemoryMetricStore(TIERS, native=native), values)) == 2.0


@pytest.mark.parametrize("reserved", [False, True])
@pytest.mark.parametrize("native", [True, False])
def test_rows_added_after_growing_start_empty(
    native: bool, reserved: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A ring grows without writing its new rows (Ring._view); a row handed to a new series is
    cleared then, so the buckets already in use read as empty for it, not as leftover memory.
    `reserved`: the rings take their rows from a reserved range (what large rings do)."""
    from rtanalytics.core.states import EMPTY

    if reserved:
        if rings._MAP_NORESERVE is None:
            pytest.skip("no reserved ranges on this platform")
        monkeypatch.setattr(rings, "RESERVE_FROM_BYTES", 0)
    store = MemoryMetricStore(TIERS, native=native, memory_budget=2**30)

    async def run() -> None:
        await store.claim("t", [MetricInfo("m1", MetricType.AVERAGE)])
        batch = PointBatch()  # the first 64 series fill the table's first rows, in two buckets
        for i in range(64):
            batch.add(i, "m1", MetricType.AVERAGE, (("k", f"a{i}"),), NOW - 5 + i % 2, float(i))
        await store.write("t", batch, NOW, 1_000)
        batch = PointBatch()  # 300 more make it grow; each takes one point in one of them
        for i in range(300):
            batch.add(i, "m1", MetricType.AVERAGE, (("k", f"b{i}"),), NOW - 5, -float(i))
        await store.write("t", batch, NOW, 1_000)

    asyncio.run(run())
    store.settle()
    table = store._tenants["t"].tables[StateKind.FULL]
    assert table.capacity > 64
    assert all(len(ring._base) > ring.data.size for ring in table.rings) is reserved
    empty = np.array([EMPTY[f] for f in table.rings[0].fields])
    for ring in table.rings:
        live = np.flatnonzero(ring.starts != np.iinfo(np.int64).min)
        assert len(live) >= 1
        for row in range(64, len(table.keys)):
            cells = ring.data[row, live]
            written = cells[:, 0] > 0  # count: the one bucket this series' point went to
            assert written.sum() == 1, (ring.tier, row)
            assert np.array_equal(cells[~written], np.broadcast_to(empty, cells[~written].shape))
            value = cells[written][0]
            assert value[0] == 1.0 and value[2] == value[3] == value[1]  # count 1, min = max = sum


def test_a_large_ring_grows_in_place(monkeypatch: pytest.MonkeyPatch) -> None:
    """Within its reserved range a ring grows by a longer view of the same memory: no row is
    copied, and an array taken before the growth still reads and writes the ring's rows. Past
    the range the rows are copied to a new one."""
    if rings._MAP_NORESERVE is None:
        pytest.skip("no reserved ranges on this platform")
    monkeypatch.setattr(rings, "RESERVE_FROM_BYTES", 0)
    ring = rings.Ring(TIERS[0], StateKind.FULL, 0)
    ring.grow(8, reserve=100)
    ring.data[:] = np.arange(ring.data.size).reshape(ring.data.shape)
    before, kept = ring.data, ring.data.copy()
    ring.grow(60, reserve=100)
    assert ring.data.shape[0] == 60 and np.shares_memory(before, ring.data)
    assert np.array_equal(ring.data[:8], kept)
    ring.data[3, 2, 1] = -1.0
    assert before[3, 2, 1] == -1.0
    assert np.array_equal(ring.arrays["sum"], ring.data[:, :, 1])
    ring.grow(150, reserve=100)  # past the reservation: a new range, the rows copied
    assert ring.data.shape[0] == 150 and not np.shares_memory(before, ring.data)
    kept[3, 2, 1] = -1.0
    assert np.array_equal(ring.data[:8], kept)


@pytest.mark.parametrize("delay_us", [500, 50_000])
@pytest.mark.parametrize("mtype", [MetricType.SUM, MetricType.AVERAGE])
def test_a_read_waits_for_the_fold_on_the_worker_thread(mtype: MetricType, delay_us: int) -> None:
    """Sums and full states are folded by the kernel's worker thread while the caller goes on.
    With the worker made slow, a read right after the write still sees every point: each of the
    store's methods waits for the fold first (settle). 500 us: the wait ends while spinning
    (with two CPUs); 50 ms: asleep on the condition variable."""
    store = MemoryMetricStore(TIERS, native=True)
    totals: list[np.ndarray] = []

    async def run() -> None:
        await store.claim("t", [MetricInfo("m", mtype)])
        ids = np.arange(4)  # the four series take the table's first rows
        for _ in range(3):
            batch = PointBatch()
            for i in range(100):
                batch.add(i, "m", mtype, (("k", str(i % 4)),), NOW - 2, 1.0)
            await store.write("t", batch, NOW, 1_000)
            totals.append(await store.totals("t", "m", ids))
        assert sorted((await store.series("t", "m")).ids.tolist()) == ids.tolist()

    metric_store._kernel.fold_test_delay(delay_us)  # before each fold
    try:
        asyncio.run(run())
    finally:
        metric_store._kernel.fold_test_delay(0)
    assert [float(t[:, 0].sum()) for t in totals] == [100.0, 200.0, 300.0]
    assert [float(t[:, 1].sum()) for t in totals] == [100.0, 200.0, 300.0]


@pytest.mark.parametrize("mtype", [MetricType.SUM, MetricType.AVERAGE, MetricType.PERCENTILE])
@pytest.mark.parametrize("native", [True, False])
def test_column_resets_stop_at_the_rows_in_use(native: bool, mtype: MetricType) -> None:
    """A new bucket clears its column in the rows handed to series only: the rest of a grown
    ring is memory no page of which has been touched yet, and clearing it too faulted in all of
    it at once. Those rows are cleared when a series takes them (the test above)."""
    store = MemoryMetricStore(TIERS, native=native)

    async def write(offset: float) -> None:
        batch = PointBatch()
        for i in range(3):
            batch.add(i, "m", mtype, (("k", str(i)),), NOW + offset, 1.0)
        await store.write("t", batch, NOW + offset, 1_000)

    async def run() -> None:
        await store.claim("t", [MetricInfo("m", mtype)])
        await write(0)
        store.settle()
        table = store._tenants["t"].tables[KIND_OF_TYPE[mtype]]
        assert table.capacity > 3 and all(ring.used == 3 for ring in table.rings)
        for ring in table.rings:
            ring.data[3:] = 7.0  # stands for memory never written
        await write(200)  # a later bucket in every tier: each resets a column
        store.settle()
        for ring in table.rings:
            assert (ring.data[3:] == 7.0).all(), ring.tier
            assert ring.data[:3, :, 0].sum() == 2 * 3  # both points of each series counted

    asyncio.run(run())


def test_a_mixed_batch_folds_on_both_threads_at_once() -> None:
    """A batch of sums, averages and percentiles: the worker folds the first two while the
    caller folds the quantile cells. With the worker made slow, every table still has every
    point when read right after each write, as on the numpy path. (The comparison of every
    cell with the numpy path's is the first test's.)"""
    stores = [MemoryMetricStore(TIERS, native=True), MemoryMetricStore(TIERS, native=False)]
    mtypes = [MetricType.SUM, MetricType.AVERAGE, MetricType.PERCENTILE]
    seen: list[list[float]] = [[], []]

    async def run(store: MemoryMetricStore, out: list[float]) -> None:
        await store.claim("t", [MetricInfo(f"m{j}", mtype) for j, mtype in enumerate(mtypes)])
        for round_ in range(3):
            batch = PointBatch()
            for i in range(90):
                j = i % 3
                batch.add(i, f"m{j}", mtypes[j], (("k", str(i % 2)),), NOW - 2 + round_, float(i))
            await store.write("t", batch, NOW + round_, 1_000)
            for j in range(3):
                out.append(float((await store.totals("t", f"m{j}", np.arange(2)))[:, 1].sum()))

    metric_store._kernel.fold_test_delay(30_000)  # 30 ms before each fold
    try:
        for store, out in zip(stores, seen, strict=True):
            asyncio.run(run(store, out))
    finally:
        metric_store._kernel.fold_test_delay(0)
    assert seen[0] == seen[1]
    assert seen[0][-3:] == [3 * sum(float(i) for i in range(j, 90, 3)) for j in range(3)]


def sum_batch(series: int, points: int, value: float = 1.0) -> PointBatch:
    """`points` points of the sum metric m over series k=0..series-1, two seconds back."""
    batch = PointBatch()
    for i in range(points):
        batch.add(i, "m", MetricType.SUM, (("k", str(i % series)),), NOW - 2, value)
    return batch


def test_writes_queue_their_folds_and_a_read_waits_for_them_all() -> None:
    """A write does not wait for the folds queued before it: with the worker made slow (200 ms a
    fold), five writes in a row leave several folds pending, where a write that waited would
    leave one. A read then waits for all of them and sees every point."""
    store = MemoryMetricStore(TIERS, native=True)

    async def run() -> tuple[int, np.ndarray]:
        await store.claim("t", [MetricInfo("m", MetricType.SUM)])
        await store.write("t", sum_batch(4, 12), NOW, 1_000)  # the series' rows, before the delay
        store.settle()
        metric_store._kernel.fold_test_delay(200_000)
        try:
            for _ in range(5):
                await store.write("t", sum_batch(4, 12), NOW, 1_000)
            pending = metric_store._kernel.fold_pending()
            return pending, await store.totals("t", "m", np.arange(4))
        finally:
            metric_store._kernel.fold_test_delay(0)

    pending, totals = asyncio.run(run())
    assert pending >= 3
    assert metric_store._kernel.fold_pending() == 0
    assert totals[:, 0].tolist() == [18.0] * 4 and totals[:, 1].tolist() == [18.0] * 4


def test_more_writes_than_the_queue_holds_and_new_rows_on_the_way() -> None:
    """With the worker slowed (1 ms a fold), 100 writes in a row, past the queue's 64: a full
    queue makes a write wait for the oldest fold. From the 30th on, each write also adds two
    series, which wait for every queued fold: the table grows past 64 and 128 rows, and its
    small arrays move. Every point is there at the end, as on the numpy path."""
    stores = [MemoryMetricStore(TIERS, native=True), MemoryMetricStore(TIERS, native=False)]

    async def run(store: MemoryMetricStore) -> np.ndarray:
        await store.claim("t", [MetricInfo("m", MetricType.SUM)])
        for round_ in range(100):
            series = 4 + 2 * max(0, round_ - 29)
            await store.write("t", sum_batch(series, 150, value=float(round_)), NOW, 10_000)
        return await store.totals("t", "m", np.arange(4 + 2 * 70))

    metric_store._kernel.fold_test_delay(1_000)
    try:
        native, reference = (asyncio.run(run(store)) for store in stores)
    finally:
        metric_store._kernel.fold_test_delay(0)
    assert np.array_equal(native, reference)
    assert native[:, 0].sum() == 100 * 150


SPIN_CHECK = """
import asyncio, os, sys
import numpy as np
if sys.argv[2] == "one-cpu":
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
from rtanalytics.adapters.memory import metric_store
from rtanalytics.bootstrap import build_store
from rtanalytics.config import Config
from rtanalytics.core.metrics import MetricInfo, MetricType, PointBatch
from rtanalytics.core.windows import default_tiers

async def run():
    store = build_store(Config.from_mapping(os.environ), default_tiers())
    await store.claim("t", [MetricInfo("m", MetricType.SUM)])
    sums = []
    for round_ in range(20):
        batch = PointBatch()
        for i in range(200):
            batch.add(i, "m", MetricType.SUM, (("k", str(i % 4)),), 1_700_000_000.0, 1.0)
        await store.write("t", batch, 1_700_000_000.0, 1_000)
        sums.append(float((await store.totals("t", "m", np.arange(4)))[:, 1].sum()))
    print(sums == [200.0 * (r + 1) for r in range(20)], metric_store._kernel.fold_spins())

metric_store._kernel.fold_test_delay(int(sys.argv[1]))
asyncio.run(run())
"""


@pytest.mark.parametrize(
    ("cpus", "env", "spins"),
    [("one-cpu", None, False), ("all", "off", False), ("all", "0", False), ("all", None, True)],
)
@pytest.mark.parametrize("delay_us", [0, 500])
def test_reads_wait_for_the_worker_whether_it_spins_or_not(
    delay_us: int, cpus: str, env: str | None, spins: bool
) -> None:
    """The worker and a waiting reader spin before sleeping only when the process may run on
    two CPUs or more (on one, the spinner would take the CPU the other needs) and
    RTA_FOLD_SPIN does not turn it off (the store built from the configuration, as the service
    builds it); either way reads see every point. In a fresh process each: the setting is the
    process's, as the kernel has one fold thread."""
    if cpus == "all" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs")
    run_env = {k: v for k, v in os.environ.items() if k != "RTA_FOLD_SPIN"}
    if env is not None:
        run_env["RTA_FOLD_SPIN"] = env
    out = subprocess.run(
        [sys.executable, "-c", SPIN_CHECK, str(delay_us), cpus],
        capture_output=True,
        text=True,
        timeout=120,
        env=run_env,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", str(spins)]
