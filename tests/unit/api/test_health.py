"""GET /health is liveness; GET /api/v1/health is readiness, 503 when the backend is down."""

from __future__ import annotations

import attrs

from rtanalytics.adapters.clock import ManualClock
from rtanalytics.adapters.memory.metric_store import MemoryMetricStore
from rtanalytics.bootstrap import bootstrap
from rtanalytics.config import Config
from rtanalytics.entrypoints.http.app import create_app
from rtanalytics.ports.metric_store import StoreStats


class DownStore(MemoryMetricStore):
    """A store whose backend stopped answering (what the Ignite adapter reports when it is)."""

    async def stats(self) -> StoreStats:
        return attrs.evolve(await super().stats(), up=False)


async def test_readiness_lists_the_backend_and_sizes(app) -> None:
    await app.asgi_client.post("/api/v1/metrics", json={"metrics": [{"name": "a", "type": "count"}]})
    _, response = await app.asgi_client.get("/api/v1/health")
    assert response.status == 200
    body = response.json
    assert body["status"] == "ok" and body["backends"]["memory"]["status"] == "up"
    assert body["series"] == {"default": 1} and body["points_accepted"] == 1


async def test_readiness_is_503_when_the_backend_is_down_and_liveness_stays_200() -> None:
    app = create_app(bootstrap(Config(), clock=ManualClock(), store=DownStore()))
    _, ready = await app.asgi_client.get("/api/v1/health")
    assert ready.status == 503 and ready.json["backends"]["memory"]["status"] == "down"
    _, alive = await app.asgi_client.get("/health")
    assert alive.status == 200
    _, export = await app.asgi_client.get("/api/v1/export/prometheus")
    assert 'rtanalytics_backend_up{backend="memory"} 0.0' in export.text
