"""What every MetricStore must do, checked through the port only."""

from __future__ import annotations

import math

import numpy as np

from rtanalytics.core.metrics import MetricInfo, MetricType, PointBatch, StateKind
from rtanalytics.core.planner import plan_range, plan_trailing, trailing_span
from rtanalytics.core.windows import default_tiers

NOW = 1_700_000_000.0
TIERS = default_tiers()


def batch(*points: tuple[str, MetricType, dict[str, str], float, object]) -> PointBatch:
    out = PointBatch()
    for i, (name, mtype, tags, ts, value) in enumerate(points):
        out.add(i, name, mtype, tuple(sorted(tags.items())), ts, value)
    return out


async def test_first_type_claimed_wins_and_windows_update(store) -> None:
    first = await store.claim("t", [MetricInfo("m", MetricType.COUNT)])
    assert first["m"].type is MetricType.COUNT
    again = await store.claim("t", [MetricInfo("m", MetricType.SUM)])
    assert again["m"].type is MetricType.COUNT
    windowed = await store.claim("t", [MetricInfo("m", MetricType.COUNT, 300_000)])
    assert windowed["m"].window_ms == 300_000
    assert (await store.metrics("t"))["m"].window_ms == 300_000
    assert await store.metrics("other") == {}


async def write(store, tenant: str, points: PointBatch, limit: int = 1_000) -> list[int]:
    infos = {MetricInfo(n, t) for n, t in zip(points.names, points.types)}
    await store.claim(tenant, sorted(infos, key=lambda i: i.name))
    return await store.write(tenant, points, NOW, limit)


async def test_written_points_aggregate_per_group_and_slot(store) -> None:
    await write(
        store,
        "t",
        batch(
            ("lat", MetricType.AVERAGE, {"ep": "/a"}, NOW - 10, 1.0),
            ("lat", MetricType.AVERAGE, {"ep": "/a"}, NOW - 5, 3.0),
            ("lat", MetricType.AVERAGE, {"ep": "/b"}, NOW - 5, 10.0),
            ("lat", MetricType.AVERAGE, {"ep": "/b"}, NOW - 200, 20.0),
        ),
    )
    series = await store.series("t", "lat")
    assert sorted(series.tags) == [(("ep", "/a"),), (("ep", "/b"),)]
    groups = np.array([0 if tags == (("ep", "/a"),) else 1 for tags in series.tags])
    plan = plan_trailing(60, NOW, TIERS)
    grid = await store.aggregate("t", "lat", StateKind.FULL, series.ids, groups, 2, plan)
    f = grid.fields
    assert f["count"][:, 0].tolist() == [2.0, 1.0]
    assert f["sum"][:, 0].tolist() == [4.0, 10.0]
    assert f["min"][:, 0].tolist() == [1.0, 10.0] and f["max"][:, 0].tolist() == [3.0, 10.0]
    assert f["last"][:, 0].tolist() == [3.0, 10.0]
    hourly = plan_range(NOW - 3600, NOW, 60, NOW, TIERS)
    whole = await store.aggregate(
        "t", "lat", StateKind.FULL, series.ids, np.zeros(2, dtype=np.int64), 1, hourly
    )
    assert whole.fields["count"].sum() == 4 and whole.fields["sum"].sum() == 34.0


async def test_late_points_land_in_coarser_tiers_only(store) -> None:
    late = NOW - 2 * 3600
    await write(store, "t", batch(("s", MetricType.SUM, {}, late, 5.0)))
    series = await store.series("t", "s")
    fine = plan_range(late - 60, late + 60, 60, NOW, TIERS)
    grid = await store.aggregate("t", "s", StateKind.SUM, series.ids, np.zeros(1, dtype=np.int64), 1, fine)
    assert grid.fields["sum"].sum() == 5.0
    assert fine.resolution_s == 60


async def test_sketch_kinds(store) -> None:
    await write(
        store,
        "t",
        batch(
            *[("p", MetricType.PERCENTILE, {}, NOW - 1, float(v)) for v in range(1, 101)],
            *[("u", MetricType.UNIQUE, {}, NOW - 1, f"user{v % 7}") for v in range(50)],
        ),
    )
    plan = plan_trailing(60, NOW, TIERS)
    p = await store.series("t", "p")
    grid = await store.aggregate("t", "p", StateKind.QUANTILE, p.ids, np.zeros(1, dtype=np.int64), 1, plan)
    assert abs(grid.sketches[0, 0].quantile(0.5) - 50) <= 0.5
    u = await store.series("t", "u")
    grid = await store.aggregate("t", "u", StateKind.DISTINCT, u.ids, np.zeros(1, dtype=np.int64), 1, plan)
    assert round(grid.sketches[0, 0].estimate()) == 7 and grid.fields["count"][0, 0] == 50


async def test_series_limit_refuses_only_new_series(store) -> None:
    refused = await write(store, "t", batch(("c", MetricType.COUNT, {"k": "a"}, NOW, 1.0)), limit=1)
    assert refused == []
    refused = await write(
        store,
        "t",
        batch(("c", MetricType.COUNT, {"k": "a"}, NOW, 1.0), ("c", MetricType.COUNT, {"k": "b"}, NOW, 1.0)),
        limit=1,
    )
    assert [i for i, _ in refused] == [1] and "limit of 1 active series" in refused[0][1]
    assert len((await store.series("t", "c")).ids) == 1


async def test_a_refused_unique_point_is_refused_not_an_error(store) -> None:
    """The only `unique` point of a batch, refused at the series limit, leaves its identity (text)
    among the batch's values: the others are still written."""
    await write(store, "t", batch(("c", MetricType.COUNT, {}, NOW, 1.0)), limit=1)
    refused = await write(
        store,
        "t",
        batch(("c", MetricType.COUNT, {}, NOW, 2.0), ("u", MetricType.UNIQUE, {}, NOW, "user-1")),
        limit=1,
    )
    assert [i for i, _ in refused] == [1] and "limit of 1 active series" in refused[0][1]
    assert len((await store.series("t", "u")).ids) == 0
    if hasattr(store, "flush"):
        await store.flush()
    series = await store.series("t", "c")
    totals = await store.totals("t", "c", series.ids)
    assert totals[:, 0].tolist() == [2.0] and totals[:, 1].tolist() == [3.0]


async def test_tenants_are_isolated(store) -> None:
    await write(store, "a", batch(("m", MetricType.COUNT, {}, NOW, 1.0)))
    assert len((await store.series("b", "m")).ids) == 0
    assert (await store.stats()).series_by_tenant.get("b", 0) == 0


async def test_eviction_forgets_series_past_every_retention(store) -> None:
    await write(store, "t", batch(("m", MetricType.COUNT, {}, NOW, 1.0)))
    assert await store.evict(NOW + 3600) == 0
    assert await store.evict(NOW + 31 * 86_400) == 1
    assert len((await store.series("t", "m")).ids) == 0


async def test_reading_nothing_is_empty(store) -> None:
    plan = plan_trailing(60, NOW, TIERS)
    grid = await store.aggregate(
        "t", "none", StateKind.SUM, np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64), 1, plan
    )
    assert grid.fields["count"][0, 0] == 0 and math.isinf(
        grid.fields.get("min", np.array([[math.inf]]))[0, 0]
    )


async def test_answers_match_the_memory_store_on_random_data(store) -> None:
    """Many points, late ones included, in every kind: every store answers as the reference."""
    from rtanalytics.adapters.memory.metric_store import MemoryMetricStore

    rng = np.random.default_rng(7)
    reference = MemoryMetricStore(TIERS)
    kinds = {
        "avg": MetricType.AVERAGE,
        "pct": MetricType.PERCENTILE,
        "uniq": MetricType.UNIQUE,
        "cnt": MetricType.COUNT,
    }
    points = []
    for _ in range(600):
        name = str(rng.choice(list(kinds)))
        tags = {"host": f"h{rng.integers(0, 6)}", "dc": f"d{rng.integers(0, 2)}"}
        age = float(rng.choice([rng.uniform(0, 120), rng.uniform(0, 7200), rng.uniform(3 * 3600, 20 * 3600)]))
        ts = round(NOW - age, 3)
        value: object = (
            f"u{rng.integers(0, 40)}" if name == "uniq" else float(np.round(rng.lognormal(2, 1), 3))
        )
        points.append((name, kinds[name], tags, ts, value))
    for i in range(0, len(points), 150):
        part = batch(*points[i : i + 150])
        await write(store, "t", part)
        await write(reference, "t", part)
    plans = [plan_trailing(w, NOW, TIERS) for w in (10, 60, 300, 3600)]
    plans += [plan_range(NOW - 6 * 3600, NOW, w, NOW, TIERS) for w in (60, 300, 3600)]
    plans.append(plan_range(NOW - 23 * 3600, NOW - 2 * 3600, 3600, NOW, TIERS))
    for name, mtype in kinds.items():
        from rtanalytics.core.metrics import KIND_OF_TYPE

        kind = KIND_OF_TYPE[mtype]
        mine, theirs = await store.series("t", name), await reference.series("t", name)
        assert sorted(mine.tags) == sorted(theirs.tags)
        dcs = sorted({dict(t)["dc"] for t in theirs.tags})
        for plan in plans:
            grids = []
            for s in (mine, theirs):
                groups = np.array([dcs.index(dict(t)["dc"]) for t in s.tags], dtype=np.int64)
                grids.append(
                    await (store if s is mine else reference).aggregate(
                        "t", name, kind, s.ids, groups, len(dcs), plan
                    )
                )
            got, want = grids
            for field in want.fields:
                assert np.array_equal(got.fields[field], want.fields[field]) or np.allclose(
                    got.fields[field], want.fields[field]
                ), (name, field, plan.window_s)
            if want.sketches is not None:
                for cell, sketch in np.ndenumerate(want.sketches):
                    other = got.sketches[cell]
                    if sketch is None:
                        assert (
                            other is None
                            or (other.count if hasattr(other, "count") else other.estimate()) == 0
                        )
                    elif kind is StateKind.QUANTILE:
                        assert other == sketch or other.quantile(0.5) == sketch.quantile(0.5), (name, cell)
                    else:
                        assert round(other.estimate()) == round(sketch.estimate()), (name, cell)
        totals_mine = await store.totals("t", name, mine.ids)
        totals_ref = await reference.totals("t", name, theirs.ids)
        by_tags = {t: row for t, row in zip(theirs.tags, totals_ref.tolist())}
        for t, row in zip(mine.tags, totals_mine.tolist()):
            assert np.allclose(row, by_tags[t]), (name, t)


async def test_a_watch_reads_as_its_series_aggregated(store) -> None:
    """A store may keep no watch (None); one it keeps must read, for any plan over the finest
    tier, what aggregating its groups' series reads -- through writes before and after it
    started, new series and groups, evicted series whose rows are used again, and other
    watches on the same series."""
    from rtanalytics.core.metrics import KIND_OF_TYPE

    rng = np.random.default_rng(11)
    kinds = {"pct": MetricType.PERCENTILE, "uniq": MetricType.UNIQUE, "avg": MetricType.AVERAGE}

    def points(count: int, now: float, hosts: int) -> PointBatch:
        out = []
        for _ in range(count):
            name = str(rng.choice(list(kinds)))
            tags = {"host": f"h{rng.integers(0, hosts)}", "dc": f"d{rng.integers(0, 3)}"}
            ts = round(now - float(rng.uniform(0, 400)), 3)
            value: object = (
                f"u{rng.integers(0, 50)}" if name == "uniq" else float(np.round(rng.normal(5, 3), 2))
            )
            out.append((name, kinds[name], tags, ts, value))
        return batch(*out)

    def by_dc(tags) -> str | None:
        dc = dict(tags)["dc"]
        return None if dc == "d2" else dc  # d2 is filtered out

    async def check(now: float, watches: dict[str, int], windows: tuple[int, ...] = (1, 60, 300)) -> None:
        for name, watch in watches.items():
            kind = KIND_OF_TYPE[kinds[name]]
            for window in windows:
                plan = plan_trailing(window, now, TIERS[:1])
                start, end, _ = trailing_span(window, now, TIERS[:1])
                read = await store.read_watch(watch, start, end)
                series = await store.series("t", name)
                keys = sorted(read.keys)
                chosen = [i for i, t in enumerate(series.tags) if by_dc(t) is not None]
                assert read.series == len(chosen)
                assert keys == sorted({by_dc(series.tags[i]) for i in chosen})
                groups = np.array([keys.index(by_dc(series.tags[i])) for i in chosen], dtype=np.int64)
                want = await store.aggregate("t", name, kind, series.ids[chosen], groups, len(keys), plan)
                got = read.partials.take([read.keys.index(k) for k in keys])
                for field in want.fields:
                    assert np.allclose(got.fields[field], want.fields[field]), (name, field, window)
                if want.sketches is not None:
                    for cell, sketch in np.ndenumerate(want.sketches):
                        other = got.sketches[cell]
                        if kind is StateKind.QUANTILE and sketch is not None:
                            assert other == sketch, (name, cell)
                        elif sketch is not None:
                            assert round(other.estimate()) == round(sketch.estimate()), (name, cell)
                        else:
                            assert other is None

    await write(store, "t", points(300, NOW, 4))
    watches = {}
    for name, mtype in kinds.items():
        watch = await store.watch("t", name, KIND_OF_TYPE[mtype], by_dc)
        if watch is None:
            return  # this store keeps no watches: live queries read series
        watches[name] = watch
    await check(NOW, watches)
    second = await store.watch("t", "avg", StateKind.FULL, lambda tags: dict(tags)["host"])
    assert second is not None  # the same series in two watches at once
    await write(store, "t", points(300, NOW + 5, 8))  # new hosts: new series, rows, groups
    await check(NOW + 5, watches, (1, 60, 300, 900))  # 900: reaches back past what was read before
    await store.unwatch(second)
    third = await store.watch("t", "avg", StateKind.FULL, by_dc)  # may take the rows `second` freed
    await write(store, "t", points(300, NOW + 6, 8))
    await check(NOW + 6, {**watches, "avg": third})
    await store.unwatch(third)
    later = NOW + 31 * 86_400  # everything evicted; rows used again by new series
    assert await store.evict(later) > 0
    await store.write("t", points(300, later, 6), later, 1_000)
    await check(later, watches)
    for watch in watches.values():
        await store.unwatch(watch)
    assert await store.read_watch(watches["avg"], int(later) - 60, int(later) + 1) is None
