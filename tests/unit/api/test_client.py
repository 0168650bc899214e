"""The client library against a real server: calls, typed errors, and a subscription that
survives the server going away and coming back."""

from __future__ import annotations

import asyncio

import pytest

from rtanalytics.client import AnalyticsClient, BadRequest, NotFound, SubscriptionError, Unauthorized
from tests.unit.api.live_server import free_port, running


async def test_ingest_query_and_current() -> None:
    async with running() as (_, base), AnalyticsClient(base, tenant_id="t1") as client:
        result = await client.ingest_metrics(
            [
                {
                    "name": "business.orders.processed",
                    "type": "count",
                    "value": 1,
                    "tags": {"status": "paid"},
                },
                {
                    "name": "business.orders.processed",
                    "type": "count",
                    "value": 2,
                    "tags": {"status": "open"},
                },
                {"name": "bad name", "type": "count"},
            ]
        )
        assert result["accepted"] == 2 and result["rejected"][0]["index"] == 2
        current = await client.current("business.orders.processed", tags={"status": "paid"})
        assert current["results"][0]["value"] == 1
        grouped = await client.query({"metrics": ["business.orders.processed"], "group_by": ["status"]})
        assert {r["group"]["status"]: r["value"] for r in grouped["results"]} == {"open": 2, "paid": 1}


async def test_errors_are_typed() -> None:
    async with running() as (_, base), AnalyticsClient(base) as client:
        with pytest.raises(BadRequest) as bad:
            await client.ingest_metrics([{"name": "x", "type": "nope"}])
        assert bad.value.status == 400
        with pytest.raises(NotFound):
            await client.current("never.seen")
        with pytest.raises(BadRequest) as query:
            await client.query({"metrics": ["a"], "aggregation": "median"})
        assert query.value.details[0]["field"] == "aggregation"
    async with running(api_keys={"k": "t"}) as (_, base), AnalyticsClient(base, api_key="wrong") as client:
        with pytest.raises(Unauthorized):
            await client.current("x")


async def test_bad_subscriptions_raise() -> None:
    async with running() as (_, base), AnalyticsClient(base) as client:
        with pytest.raises(SubscriptionError) as caught:
            async for _ in client.subscribe(["m"], interval_ms=5):
                pass
        assert caught.value.code == "invalid_query"


async def test_subscribe_reconnects_and_subscribes_again() -> None:
    port = free_port()
    client = AnalyticsClient(f"http://127.0.0.1:{port}", tenant_id="t1", reconnect_delay=0.1)
    updates: asyncio.Queue = asyncio.Queue()

    async def listen() -> None:
        async for update in client.subscribe(["hits"], interval_ms=100):
            await updates.put(update)

    async with running(port):
        task = asyncio.get_running_loop().create_task(listen())
        assert (await asyncio.wait_for(updates.get(), 5))["value"] is None
        await client.ingest_metrics([{"name": "hits", "type": "count", "value": 5}])
        assert (await asyncio.wait_for(updates.get(), 5))["value"] == 5
    # the server is gone; a new one takes its port, and the subscription carries on
    async with running(port):
        assert (await asyncio.wait_for(updates.get(), 10))["value"] is None  # subscribed again
        await client.ingest_metrics([{"name": "hits", "type": "count", "value": 7}])
        assert (await asyncio.wait_for(updates.get(), 5))["value"] == 7
        task.cancel()
    await client.aclose()
