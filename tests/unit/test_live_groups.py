"""Live query groups in-process: members that subscribed at different moments share
evaluations, each is sent what changed since its own last message, on the interval's grid."""

from __future__ import annotations

import asyncio

from rtanalytics import Engine
from rtanalytics.adapters.clock import ManualClock
from rtanalytics.core.live import LiveQueries, LiveUpdate

START = 1_700_000_000.05


def test_members_of_a_group_get_what_changed_for_them() -> None:
    clock = ManualClock(START)
    engine = Engine(clock=clock)
    live = LiveQueries(engine, clock)
    engine.on_change(live.notice)
    got: dict[str, list[LiveUpdate]] = {"a": [], "b": []}
    query = {"type": "subscribe", "metrics": ["m", "n"], "aggregation": "sum", "interval_ms": 100}

    async def run() -> None:
        await engine.ingest(
            [{"name": "m", "type": "sum", "value": 1}, {"name": "n", "type": "sum", "value": 1}]
        )
        a = live.connect("default", "a", got["a"].append)
        await live.subscribe(a, {**query, "id": "a"})
        await live.push_now(a, "a")
        clock.advance(0.03)  # b joins the same query a moment later
        b = live.connect("default", "b", got["b"].append)
        await live.subscribe(b, {**query, "id": "b"})
        await live.push_now(b, "b")
        assert [len(u.rows) for u in got["a"] + got["b"]] == [2, 2]  # each first push: everything
        await engine.ingest([{"name": "m", "type": "sum", "value": 5}])
        evaluations = live.evaluations
        for _ in range(6):  # 300 ms of 50 ms ticks
            clock.advance(0.05)
            await live.run_due()
        assert live.evaluations - evaluations == 1  # both due at the same grid instant: one evaluation
        for connection, sub_id in ((a, "a"), (b, "b")):
            due = connection.subscriptions[sub_id].due_at
            assert abs(due * 10 - round(due * 10)) < 1e-6  # next push on the 100 ms grid
        for name in ("a", "b"):
            update = got[name][-1]
            assert [(r.metric, r.value) for r in update.rows] == [("m", 6.0)]  # only what changed
        await engine.ingest([{"name": "n", "type": "sum", "value": 2}])
        for _ in range(4):
            clock.advance(0.05)
            await live.run_due()
        assert [(r.metric, r.value) for r in got["a"][-1].rows] == [("n", 3.0)]
        assert [(r.metric, r.value) for r in got["b"][-1].rows] == [("n", 3.0)]
        gaps = [later.at - earlier.at for earlier, later in zip(got["a"], got["a"][1:])]
        assert all(gap >= 0.1 - 1e-9 for gap in gaps), gaps  # at most one message per interval

    asyncio.run(run())


def test_ingesting_one_metric_evaluates_only_the_queries_on_it() -> None:
    """1,000 subscriptions on other metrics: ingesting one metric costs one evaluation, and
    only its subscriber is sent anything."""
    clock = ManualClock(START)
    engine = Engine(clock=clock)
    live = LiveQueries(engine, clock)
    engine.on_change(live.notice)
    got: dict[str, list[LiveUpdate]] = {}

    async def run() -> None:
        await engine.ingest(
            [{"name": f"m{i}", "type": "count"} for i in range(1_000)] + [{"name": "hot", "type": "count"}]
        )
        for name in [f"m{i}" for i in range(1_000)] + ["hot"]:
            got[name] = []
            connection = live.connect("default", name, got[name].append)
            await live.subscribe(
                connection, {"type": "subscribe", "metrics": [name], "id": name, "interval_ms": 100}
            )
            await live.push_now(connection, name)
        clock.advance(0.2)
        await live.run_due()  # the first pushes were made; nothing has changed since
        evaluations = live.evaluations
        pushed = sum(len(updates) for updates in got.values())
        await engine.ingest([{"name": "hot", "type": "count"}])
        for _ in range(4):  # 200 ms of 50 ms ticks
            clock.advance(0.05)
            await live.run_due()
        assert live.evaluations - evaluations == 1
        assert sum(len(updates) for updates in got.values()) - pushed == 1
        assert [(r.metric, r.value) for r in got["hot"][-1].rows] == [("hot", 2.0)]

    asyncio.run(run())
