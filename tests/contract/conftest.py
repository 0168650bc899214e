"""The MetricStore contract runs against every adapter: memory always, others when they exist.

A later adapter adds itself to STORE_FACTORIES (with an `integration` mark when it needs a server).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest

from rtanalytics.adapters.memory.metric_store import MemoryMetricStore
from rtanalytics.core.windows import default_tiers
from rtanalytics.ports.metric_store import MetricStore

STORE_FACTORIES: dict[str, Callable[[], MetricStore]] = {
    "memory": lambda: MemoryMetricStore(default_tiers()),
    "memory-numpy": lambda: MemoryMetricStore(default_tiers(), native=False),  # without the C kernel
}


@pytest.fixture(params=sorted(STORE_FACTORIES))
async def store(request: pytest.FixtureRequest) -> AsyncIterator[MetricStore]:
    made = STORE_FACTORIES[request.param]()
    await made.start()
    yield made
    await made.aclose()
