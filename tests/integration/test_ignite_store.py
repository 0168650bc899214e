"""The Ignite store against a real Ignite: outages, several writers, TTL, failover."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest

from rtanalytics.adapters.ignite.metric_store import IgniteMetricStore, IgniteSettings
from rtanalytics.core.errors import BackendUnavailableError
from rtanalytics.core.metrics import MetricInfo, MetricType, PointBatch, StateKind
from rtanalytics.core.planner import plan_range, plan_trailing
from rtanalytics.core.windows import default_tiers
from tests.contract.conftest import clear_ignite
from tests.integration.proxy import Proxy
from tests.integration.servers import LAUNCHER, ROOT
from tests.unit.receivers import free_port

pytestmark = pytest.mark.integration
TIERS = default_tiers()


def node(env: dict[str, str]) -> tuple[str, int]:
    return env["IGNITE_HOST"], int(env.get("IGNITE_PORT", "10800"))


def store_on(nodes: tuple[tuple[str, int], ...], **kw: object) -> IgniteMetricStore:
    settings = IgniteSettings(nodes=nodes, writer_id=f"t-{uuid.uuid4().hex[:8]}", **kw)  # type: ignore[arg-type]
    return IgniteMetricStore(settings, TIERS)


def points(
    name: str, mtype: MetricType, n: int, now: float, tags: dict[str, str] | None = None
) -> PointBatch:
    out = PointBatch()
    for i in range(n):
        series_tags = tuple(sorted((tags or {"host": f"h{i % 3}"}).items()))
        out.add(i, name, mtype, series_tags, now - (i % 50), float(i % 10))
    return out


async def write(store: IgniteMetricStore, batch: PointBatch, now: float) -> None:
    await store.claim("t", [MetricInfo(batch.names[0], batch.types[0])])
    assert await store.write("t", batch, now, 10_000) == []


async def total(
    store: IgniteMetricStore, name: str, now: float, window_s: int = 300, tenant: str = "t"
) -> tuple[float, float]:
    series = await store.series(tenant, name)
    plan = plan_trailing(window_s, now, TIERS)
    grid = await store.aggregate(
        tenant, name, StateKind.SUM, series.ids, np.zeros(len(series.ids), dtype=np.int64), 1, plan
    )
    return float(grid.fields["count"][0, 0]), float(grid.fields["sum"][0, 0])


async def test_start_fails_with_one_clear_line_when_ignite_is_unreachable() -> None:
    store = store_on((("127.0.0.1", free_port()),))
    with pytest.raises(BackendUnavailableError) as caught:
        await store.start()
    message = str(caught.value)
    assert "Ignite is unreachable at 127.0.0.1:" in message and "\n" not in message
    done = subprocess.run(
        [sys.executable, "-m", "rtanalytics.entrypoints.cli", "serve", "--backend", "ignite"],
        env={**os.environ, "IGNITE_HOST": "127.0.0.1", "IGNITE_PORT": str(free_port())},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Ignite is unreachable" in lines[0], done.stderr


async def test_a_lost_connection_gives_503s_then_loses_nothing(ignite_server) -> None:
    clear_ignite(ignite_server.env)
    proxy = Proxy(node(ignite_server.env), free_port())
    await proxy.start()
    store = store_on((("127.0.0.1", proxy.port),), flush_interval_s=0.2, backups=0)
    await store.start()
    now = time.time()
    try:
        await write(store, points("c", MetricType.COUNT, 100, now), now)
        await store.flush()
        await write(store, points("c", MetricType.COUNT, 50, now), now)  # buffered, not yet flushed
        await proxy.cut()
        with pytest.raises(BackendUnavailableError):
            await store.flush()
        with pytest.raises(BackendUnavailableError, match="unreachable"):
            await store.write("t", points("c", MetricType.COUNT, 1, now), now, 10_000)
        with pytest.raises(BackendUnavailableError):
            await total(store, "c", now)
        await proxy.start()
        deadline = time.monotonic() + 30
        while not store.up and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        assert store.up
        await store.flush()
        assert await total(store, "c", now) == (
            150.0,
            float(sum(i % 10 for i in range(100)) + sum(i % 10 for i in range(50))),
        )
    finally:
        await store.aclose()
        await proxy.cut()
    reader = store_on((node(ignite_server.env),))  # a fresh process's view: only what Ignite holds
    await reader.start()
    try:
        await reader.sync()
        assert (await total(reader, "c", now))[0] == 150.0
    finally:
        await reader.aclose()


async def test_two_writers_of_one_series_and_bucket_lose_nothing(ignite_server) -> None:
    clear_ignite(ignite_server.env)
    now = time.time()
    a, b = store_on((node(ignite_server.env),)), store_on((node(ignite_server.env),))
    await a.start()
    await b.start()
    try:
        for _ in range(5):
            await asyncio.gather(
                write(a, points("c", MetricType.COUNT, 200, now, {"k": "same"}), now),
                write(b, points("c", MetricType.COUNT, 300, now, {"k": "same"}), now),
            )
            await asyncio.gather(a.flush(), b.flush())
        for reader in (a, b):
            await reader.sync()
            count, _ = await total(reader, "c", now)
            assert count == 5 * 500
            series = await reader.series("t", "c")
            assert (await reader.totals("t", "c", series.ids))[:, 0].tolist() == [2500.0]
    finally:
        await a.aclose()
        await b.aclose()


async def test_short_cache_ttl_expires_raw_points_and_keeps_rollups(ignite_server) -> None:
    clear_ignite(ignite_server.env)
    store = store_on((node(ignite_server.env),), raw_ttl_s=2, backups=0)
    await store.start()
    now = time.time()
    try:
        await write(store, points("c", MetricType.COUNT, 30, now), now)
        await store.flush()
        assert (await total(store, "c", now, window_s=10))[0] > 0  # a 10 s window reads 1 s buckets
        await asyncio.sleep(3.5)
        assert (await total(store, "c", time.time(), window_s=10))[0] == 0
        series = await store.series("t", "c")
        hourly = plan_range(now - 7200, now + 1, 3600, now, TIERS)  # 1 h buckets: the rollup tier
        grid = await store.aggregate(
            "t", "c", StateKind.SUM, series.ids, np.zeros(len(series.ids), dtype=np.int64), 1, hourly
        )
        assert grid.fields["count"].sum() == 30
    finally:
        await store.aclose()


def _devservices(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(LAUNCHER), *args], capture_output=True, text=True, timeout=300, check=False)


async def test_kill_9_of_a_node_after_a_flush_loses_no_flushed_point(ignite_server) -> None:
    env = ignite_server.env
    if env.get("IGNITE_HOST") not in ("127.0.0.1", "localhost"):
        pytest.fail("this test drives scripts/devservices; point IGNITE_HOST at 127.0.0.1 or unset it")
    home = Path(os.environ.get("RTA_DEVSERVICES_HOME", ROOT / ".devservices"))
    done = _devservices("up", "ignite", "--ignite-nodes", "2")
    assert done.returncode == 0, done.stderr[-2000:]
    pidfile = home / "run" / "ignite-2.pid"
    try:
        from pyignite import Client

        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            client = Client()
            with client.connect("127.0.0.1", 10800):
                rows = list(client.sql("SELECT COUNT(*) FROM SYS.NODES WHERE IS_CLIENT = FALSE"))
            if rows[0][0] == 2:
                break
            time.sleep(1)
        clear_ignite(env)  # caches are made again below, with one backup on the second node
        store = store_on((("127.0.0.1", 10800), ("127.0.0.1", 10801)), backups=1)
        await store.start()
        now = time.time()
        try:
            names = [f"m{i}" for i in range(20)]  # enough keys to have primaries on both nodes
            for name in names:
                await write(store, points(name, MetricType.COUNT, 60, now), now)
            await store.flush()
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
            deadline = time.monotonic() + 60
            answers: dict[str, float] = {}
            while time.monotonic() < deadline and len(answers) < len(names):
                for name in names:
                    if name in answers:
                        continue
                    try:
                        answers[name] = (await total(store, name, now))[0]
                    except BackendUnavailableError:
                        await asyncio.sleep(0.5)  # the client moves to the surviving node
                        break
            assert answers == {name: 60.0 for name in names}
        finally:
            await store.aclose()
    finally:
        if pidfile.exists():
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pidfile.read_text()), signal.SIGKILL)
            pidfile.unlink(missing_ok=True)


async def test_an_input_position_is_committed_with_the_state_it_covers(ignite_server) -> None:
    clear_ignite(ignite_server.env)
    store = store_on((node(ignite_server.env),), flush_interval_s=60)  # flushes only when told
    await store.start()
    now = time.time()
    try:
        await write(store, points("c", MetricType.COUNT, 10, now), now)
        store.set_position("events", {"ledger": 3, "entry": 41})
        assert await store.committed_position("events") is None
        reader = store_on((node(ignite_server.env),))
        await reader.start()
        try:
            await reader.sync()
            assert (await total(reader, "c", now))[0] == 0  # neither the points nor the position yet
            await store.flush()
            assert await store.committed_position("events") == {"ledger": 3, "entry": 41}
            await reader.sync()
            assert (await total(reader, "c", now))[0] == 10
        finally:
            await reader.aclose()
    finally:
        await store.aclose()


async def test_over_http_an_outage_is_503_with_a_clear_message_and_loses_nothing(ignite_server) -> None:
    from tests.unit.api.live_server import running

    clear_ignite(ignite_server.env)
    proxy = Proxy(node(ignite_server.env), free_port())
    await proxy.start()
    point = {"metrics": [{"name": "jobs", "type": "count", "value": 1, "tags": {"q": "a"}}]}
    query = {"metrics": ["jobs"], "window": "5m", "aggregation": "count"}
    settings = {
        "backend": "ignite",
        "ignite_port": proxy.port,
        "ignite_backups": 0,
        "writer_id": "http-outage",
    }
    try:
        async with running(**settings) as (_, base), httpx.AsyncClient(base_url=base, timeout=30) as http:
            assert (await http.post("/api/v1/metrics", json=point)).status_code == 202
            assert (await http.post("/api/v1/metrics", json=point)).status_code == 202
            await proxy.cut()
            deadline = time.monotonic() + 20
            while (await http.get("/api/v1/health")).status_code != 503 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            refused = await http.post("/api/v1/metrics", json=point)
            assert refused.status_code == 503 and "Ignite cluster is unreachable" in refused.text
            assert (await http.post("/api/v1/query", json=query)).status_code == 503
            await proxy.start()
            deadline = time.monotonic() + 30
            while (await http.get("/api/v1/health")).status_code != 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            answer = await http.post("/api/v1/query", json=query)
            assert answer.status_code == 200 and answer.json()["results"][0]["value"] == 2
    finally:
        await proxy.cut()
    reader = store_on((node(ignite_server.env),))  # what Ignite holds, read by another process
    await reader.start()
    try:
        await reader.sync()
        assert (await total(reader, "jobs", time.time(), tenant="default"))[0] == 2
    finally:
        await reader.aclose()
