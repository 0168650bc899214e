"""The MetricStore contract runs against every adapter: memory (with and without the C kernel)
and Ignite (on a real server; reads that merge this process's unflushed points, and reads after
every write has been flushed).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from rtanalytics.adapters.memory.metric_store import MemoryMetricStore
from rtanalytics.core.windows import default_tiers
from rtanalytics.ports.metric_store import MetricStore
from tests.integration.servers import Endpoint, find


def _memory() -> MetricStore:
    return MemoryMetricStore(default_tiers())


def _memory_numpy() -> MetricStore:
    return MemoryMetricStore(default_tiers(), native=False)  # without the C kernel


def _ignite(flush_each_write: bool) -> Callable[[dict[str, str]], MetricStore]:
    def make(env: dict[str, str]) -> MetricStore:
        from rtanalytics.adapters.ignite.metric_store import IgniteMetricStore, IgniteSettings

        class FlushingStore(IgniteMetricStore):
            async def write(self, *args: Any, **kwargs: Any) -> list[tuple[int, str]]:
                refused = await super().write(*args, **kwargs)
                await self.flush()
                return refused

        settings = IgniteSettings(
            nodes=((env["IGNITE_HOST"], int(env.get("IGNITE_PORT", "10800"))),),
            backups=0,
            writer_id=f"contract-{uuid.uuid4().hex[:8]}",
        )
        return (FlushingStore if flush_each_write else IgniteMetricStore)(settings, default_tiers())

    return make


STORE_FACTORIES: dict[str, Callable[..., MetricStore]] = {
    "memory": _memory,
    "memory-numpy": _memory_numpy,
    "ignite": _ignite(False),
    "ignite-flushed": _ignite(True),
}
NEEDS_SERVER = {"ignite": "ignite", "ignite-flushed": "ignite"}


@pytest.fixture(scope="session")
def contract_ignite() -> Iterator[Endpoint]:
    try:
        endpoint = find("ignite")
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield endpoint
    if endpoint.stop is not None:
        endpoint.stop()


def clear_ignite(env: dict[str, str]) -> None:
    """Drop the store's caches so each test starts empty (the store makes them again)."""
    from pyignite import Client

    from rtanalytics.adapters.ignite.metric_store import REGISTRY_CACHE, TIER_CACHES

    client = Client()
    with client.connect(env["IGNITE_HOST"], int(env.get("IGNITE_PORT", "10800"))):
        existing = set(client.get_cache_names())
        for name in (*TIER_CACHES, REGISTRY_CACHE):
            if name in existing:
                client.get_cache(name).destroy()


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MetricStore]:
    name = request.param
    if name in NEEDS_SERVER:
        request.applymarker(pytest.mark.integration)
        env = request.getfixturevalue("contract_ignite").env
        clear_ignite(env)
        made = STORE_FACTORIES[name](env)
    else:
        made = STORE_FACTORIES[name]()
    await made.start()
    yield made
    await made.aclose()
