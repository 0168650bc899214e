"""A real Sanic server in the test's event loop, for WebSocket tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sanic import Sanic

from rtanalytics.bootstrap import bootstrap
from rtanalytics.config import Config
from rtanalytics.entrypoints.http.app import create_app
from tests.unit.receivers import free_port


@asynccontextmanager
async def running(port: int | None = None, **config: Any) -> AsyncIterator[tuple[Sanic, str]]:  # type: ignore[type-arg]
    """A started server on loopback; yields the app and its base URL (http://...)."""
    port = port or free_port()
    app = create_app(bootstrap(Config(**config)))
    app.config.TOUCHUP = False  # Sanic's touch-up fails on the second app started in one process
    server = await app.create_server(
        host="127.0.0.1", port=port, return_asyncio_server=True, access_log=False
    )
    assert server is not None
    await server.startup()
    await server.before_start()
    await server.after_start()
    try:
        yield app, f"http://127.0.0.1:{port}"
    finally:
        await server.before_stop()
        for connection in list(server.connections):  # keep-alive clients must see the server go
            connection.close()
        server.close()
        await server.wait_closed()
        await server.after_stop()
