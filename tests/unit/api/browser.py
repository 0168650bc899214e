"""Real headless Chromium (Debian's `chromium`) driven over the DevTools protocol."""

from __future__ import annotations

import asyncio
import base64
import json
import shutil
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import websockets

from tests.unit.api.live_server import free_port


class DevTools:
    """Just enough of the Chrome DevTools protocol: run scripts, navigate, take screenshots."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = 0

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self.ids += 1
        await self.ws.send(json.dumps({"id": self.ids, "method": method, "params": params}))
        while True:
            reply = json.loads(await self.ws.recv())
            if reply.get("id") == self.ids:
                if "error" in reply:
                    raise AssertionError(f"{method}: {reply['error']}")
                return reply["result"]  # type: ignore[no-any-return]

    async def evaluate(self, expression: str) -> Any:
        result = await self.call(
            "Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True
        )
        if "exceptionDetails" in result:
            raise AssertionError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, timeout: float = 10.0) -> Any:
        deadline = time.monotonic() + timeout
        guarded = f"(() => {{ try {{ return ({expression}); }} catch (e) {{ return null; }} }})()"
        while time.monotonic() < deadline:
            value = await self.evaluate(guarded)
            if value:
                return value
            await asyncio.sleep(0.1)
        raise AssertionError(f"{expression} did not become true within {timeout}s")

    async def screenshot(self, path: str) -> None:
        shot = await self.call("Page.captureScreenshot", format="png")
        with open(path, "wb") as out:
            out.write(base64.b64decode(shot["data"]))


@asynccontextmanager
async def chromium(width: int = 1280, height: int = 720) -> AsyncIterator[DevTools]:
    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is missing: install Debian's `chromium` package (scripts/test does)")
    port = free_port()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as profile:  # chromium helpers may linger
        process = subprocess.Popen(
            [
                binary,
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--window-size={width},{height}",
                f"--user-data-dir={profile}",
                f"--remote-debugging-port={port}",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            pages: list[dict[str, Any]] = []
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not pages:
                try:
                    listed = httpx.get(f"http://127.0.0.1:{port}/json/list", timeout=2).json()
                    pages = [t for t in listed if t.get("type") == "page"]
                except httpx.HTTPError:
                    await asyncio.sleep(0.2)
            assert pages, "chromium did not open a page"
            async with websockets.connect(pages[0]["webSocketDebuggerUrl"], max_size=2**26) as ws:
                yield DevTools(ws)
        finally:
            process.terminate()
            process.wait(timeout=30)
