"""AnalyticsClient: the service's HTTP and WebSocket API for other services (asyncio).

    async with AnalyticsClient("http://127.0.0.1:8000", api_key="...") as client:
        await client.ingest_metrics([{"name": "business.orders.processed", "type": "count"}])
        print(await client.current("business.orders.processed"))
        async for update in client.subscribe(["api.requests.count"], window="1m"):
            print(update["metric"], update["group"], update["value"])

`subscribe` reconnects after a dropped connection (with backoff) and subscribes again; 4xx and
5xx answers raise the ClientError subclass for their status.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from typing import Any

import httpx
import orjson
import websockets


class ClientError(Exception):
    """An error answer from the service: status, code, message and per-field details."""

    def __init__(
        self, status: int, code: str, message: str, details: Sequence[Mapping[str, str]] = ()
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.details = list(details)


class BadRequest(ClientError): ...


class Unauthorized(ClientError): ...


class Forbidden(ClientError): ...


class NotFound(ClientError): ...


class Conflict(ClientError): ...


class PayloadTooLarge(ClientError): ...


class TooManyRequests(ClientError): ...


class ServerError(ClientError): ...


class SubscriptionError(ClientError):
    """The service refused a subscription (invalid query, too many subscriptions)."""


_BY_STATUS = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
}


def _raise_for(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    try:
        error = response.json()["error"]
        code, message, details = error["code"], error["message"], error.get("details", [])
    except (ValueError, KeyError, TypeError):
        code, message, details = "http_error", response.text[:500], []
    cls = _BY_STATUS.get(response.status_code, ServerError if response.status_code >= 500 else ClientError)
    raise cls(response.status_code, code, message, details)


class AnalyticsClient:
    def __init__(
        self,
        base_url: str = "http://127.0.0.1:8000",
        *,
        api_key: str | None = None,
        tenant_id: str | None = None,
        timeout: float = 10.0,
        reconnect_delay: float = 0.5,
        max_reconnect_delay: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_key = api_key
        self.tenant_id = tenant_id
        self.reconnect_delay = reconnect_delay
        self.max_reconnect_delay = max_reconnect_delay
        headers = {"X-API-Key": api_key} if api_key else {}
        params = {"tenant_id": tenant_id} if tenant_id else {}
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=headers, params=params, timeout=timeout
        )

    async def __aenter__(self) -> AnalyticsClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        response = await self._http.request(method, path, **kwargs)
        _raise_for(response)
        body: dict[str, Any] = response.json()
        return body

    async def ingest_metrics(self, metrics: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
        """POST /api/v1/metrics: `{"accepted": n, "rejected": [...]}`; BadRequest if none is valid."""
        return await self._json(
            "POST",
            "/api/v1/metrics",
            content=orjson.dumps({"metrics": list(metrics)}),
            headers={"Content-Type": "application/json"},
        )

    async def query(self, query: Mapping[str, Any]) -> dict[str, Any]:
        """POST /api/v1/query."""
        return await self._json("POST", "/api/v1/query", json=dict(query))

    async def current(
        self,
        name: str,
        *,
        tags: Mapping[str, str] | None = None,
        window: str | None = None,
        aggregation: str | None = None,
        group_by: Sequence[str] = (),
    ) -> dict[str, Any]:
        """GET /api/v1/metrics/{name}/current."""
        params: dict[str, str] = {f"tags.{k}": v for k, v in (tags or {}).items()}
        if window:
            params["window"] = window
        if aggregation:
            params["aggregation"] = aggregation
        if group_by:
            params["group_by"] = ",".join(group_by)
        return await self._json("GET", f"/api/v1/metrics/{name}/current", params=params)

    def _ws_url(self, client_id: str) -> str:
        url = self.base_url.replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        query = []
        if self.tenant_id:
            query.append(f"tenant_id={self.tenant_id}")
        if self.api_key:
            query.append(f"api_key={self.api_key}")
        return f"{url}/ws/metrics/{client_id}" + ("?" + "&".join(query) if query else "")

    async def subscribe(
        self,
        metrics: Sequence[str],
        *,
        client_id: str | None = None,
        **live_query: Any,
    ) -> AsyncIterator[dict[str, Any]]:
        """Updates of a live query (`data` of each `metric_data` message), across reconnects.

        `live_query` takes window, aggregation, filters, group_by, interval_ms. Alerts for the
        tenant arrive too, as `{"alert": {...}}`.
        """
        client_id = client_id or f"client-{uuid.uuid4().hex[:8]}"
        subscription = {"type": "subscribe", "metrics": list(metrics), "id": "s1", **live_query}
        delay = self.reconnect_delay
        while True:
            try:
                async with websockets.connect(self._ws_url(client_id), open_timeout=10) as ws:
                    await ws.send(orjson.dumps(subscription).decode())
                    async for raw in ws:
                        message = orjson.loads(raw)
                        kind = message.get("type")
                        if kind == "metric_data":
                            delay = self.reconnect_delay
                            yield message["data"]
                        elif kind == "alert":
                            yield {"alert": message["data"]}
                        elif kind == "error":
                            if message.get("code") in (
                                "invalid_query",
                                "too_many_subscriptions",
                                "invalid_message",
                            ):
                                raise SubscriptionError(
                                    400, message["code"], message["message"], message.get("details", [])
                                )
                            if message.get("code") in ("unauthorized", "forbidden"):
                                raise (Unauthorized if message["code"] == "unauthorized" else Forbidden)(
                                    401 if message["code"] == "unauthorized" else 403,
                                    message["code"],
                                    message["message"],
                                )
            except (TimeoutError, OSError, websockets.ConnectionClosedError, websockets.InvalidHandshake):
                pass  # dropped: reconnect and subscribe again below
            except websockets.ConnectionClosedOK:
                pass
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.max_reconnect_delay)
