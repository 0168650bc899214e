"""Live queries read standing aggregates (store watches): the answer must be the one a plain
query gives, whatever was written before the watch started, after it, while time moved on."""

from __future__ import annotations

import asyncio
import math
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from rtanalytics import Engine
from rtanalytics.adapters.clock import ManualClock
from rtanalytics.adapters.memory.metric_store import MemoryMetricStore
from rtanalytics.core.engine import WATCH_IDLE_S
from tests.unit.test_engine_oracle import NOW, points, queries


def close(got: Any, want: Any) -> bool:
    """Equal, but for float sums added in another order."""
    if isinstance(want, dict):
        return isinstance(got, dict) and set(got) == set(want) and all(close(got[k], want[k]) for k in want)
    if isinstance(want, float) and isinstance(got, float):
        return math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-9)
    return bool(got == want)


def rows(result: Any) -> list[tuple[str, dict[str, Any], Any]]:
    return [(r.metric, r.group, r.value) for r in result.results]


async def same_answers(engine: Engine, qs: list[dict[str, Any]]) -> None:
    for q in qs:
        plain = rows(await engine.query(q))
        live = rows(await engine.query(q, live=True))
        assert [r[:2] for r in live] == [r[:2] for r in plain], q
        for (_, _, got), (_, _, want) in zip(live, plain):
            assert close(got, want), (q, got, want)


@st.composite
def trailing(draw: Any) -> dict[str, Any]:
    q = draw(queries())
    q.pop("start_time", None)
    q.pop("end_time", None)
    q["window"] = f"{draw(st.sampled_from([1, 7, 60, 90, 300, 1800, 3599]))}s"
    return q


@settings(max_examples=150, deadline=None)
@given(
    points(),
    points(),
    st.lists(trailing(), min_size=1, max_size=4),
    st.floats(min_value=0, max_value=900),
    st.booleans(),
)
def test_live_answers_equal_plain_queries(
    before: list[dict[str, Any]],
    after: list[dict[str, Any]],
    qs: list[dict[str, Any]],
    later: float,
    native: bool,
) -> None:
    clock = ManualClock(NOW)
    engine = Engine(clock=clock, store=MemoryMetricStore(native=native))

    async def run() -> None:
        await engine.ingest(before)
        await same_answers(engine, qs)  # the first live read starts the watches, seeded
        clock.advance(later)
        now = clock.now()
        await engine.ingest([{**p, "timestamp": p["timestamp"] - NOW + now} for p in after])
        await same_answers(engine, qs)  # kept up to date by writes, new series and groups included

    asyncio.run(run())


def test_live_queries_use_watches_and_idle_ones_stop() -> None:
    clock = ManualClock(NOW)
    store = MemoryMetricStore()
    engine = Engine(clock=clock, store=store)
    q = {"metrics": ["lat"], "aggregation": "max", "group_by": ["ep"], "window": "1m"}

    async def run() -> None:
        await engine.ingest([{"name": "lat", "type": "max", "value": 5, "tags": {"ep": "/a"}}])
        first = await engine.query(q, live=True)
        assert len(store._watches) == 1 and rows(first) == [("lat", {"ep": "/a"}, 5.0)]
        await engine.ingest([{"name": "lat", "type": "max", "value": 9, "tags": {"ep": "/b"}}])
        assert rows(await engine.query(q, live=True)) == [
            ("lat", {"ep": "/a"}, 5.0),
            ("lat", {"ep": "/b"}, 9.0),
        ]
        clock.advance(WATCH_IDLE_S + 1)
        await engine.tick()
        assert not store._watches  # nobody asked for a minute: stopped, its rows freed
        assert rows(await engine.query(q, live=True)) == []  # the window moved past both points

    asyncio.run(run())


def test_a_range_or_a_long_window_reads_series() -> None:
    store = MemoryMetricStore()
    engine = Engine(clock=ManualClock(NOW), store=store)

    async def run() -> None:
        await engine.ingest([{"name": "n", "type": "count"}])
        await engine.query({"metrics": ["n"], "window": "2h"}, live=True)
        await engine.query({"metrics": ["n"], "window": "1m", "start_time": NOW - 600}, live=True)
        assert not store._watches

    asyncio.run(run())


def test_live_queries_that_share_a_metric_share_its_answer() -> None:
    """Dashboards that each add their own metric to a common one: the common metric's rows are
    read once per change, not once per query, and each query still gets its own metrics."""
    store = MemoryMetricStore()
    engine = Engine(clock=ManualClock(NOW), store=store)
    reads: list[str] = []
    read_watch = store.read_watch

    async def counted(watch: int, *args: Any, **kwargs: Any) -> Any:
        reads.append(store._watches[watch][1].name)
        return await read_watch(watch, *args, **kwargs)

    store.read_watch = counted  # type: ignore[method-assign]

    async def run() -> None:
        for name in ("common", "a", "b"):
            await engine.ingest([{"name": name, "type": "sum", "value": 2}])
        qa = {"metrics": ["common", "a"], "window": "1m"}
        qb = {"metrics": ["common", "b"], "window": "1m"}
        for expected in (2.0, 5.0):
            reads.clear()
            answers = [rows(await engine.query(q, live=True)) for q in (qa, qb)]
            assert answers == [
                [("common", {}, expected), ("a", {}, 2.0)],
                [("common", {}, expected), ("b", {}, 2.0)],
            ]
            assert sorted(reads) == (["a", "b", "common"] if expected == 2.0 else ["common"])
            await engine.ingest([{"name": "common", "type": "sum", "value": 3}])
        # a query that differs in anything but its metrics has an answer of its own
        reads.clear()
        await engine.query({"metrics": ["common"], "window": "1m", "aggregation": "count"}, live=True)
        assert reads == ["common"]

    asyncio.run(run())
