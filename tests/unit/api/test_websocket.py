"""The WebSocket API with a real client: every message type and error code, live updates,
coalescing, unsubscribe, tenant isolation, alerts, and back-pressure."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any

import httpx
import pytest
import websockets

from rtanalytics.core.live import LiveUpdate
from rtanalytics.core.results import ResultRow
from rtanalytics.entrypoints.http.live_bp import Outbox
from tests.unit.api.live_server import running


async def recv(ws: Any, timeout: float = 5.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), timeout))


async def recv_type(ws: Any, kind: str, timeout: float = 5.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        message = await recv(ws, max(0.01, deadline - time.monotonic()))
        if message["type"] == kind:
            return message


async def recv_data(ws: Any, value: Any, timeout: float = 5.0) -> dict[str, Any]:
    """The first metric_data carrying `value` (earlier ones, such as the first "no data", skipped)."""
    deadline = time.monotonic() + timeout
    while True:
        message = await recv_type(ws, "metric_data", max(0.01, deadline - time.monotonic()))
        if message["data"]["value"] == value:
            return message


async def ingest(base: str, points: list[dict[str, Any]], tenant: str | None = None) -> None:
    params = {"tenant_id": tenant} if tenant else {}
    async with httpx.AsyncClient() as client:
        response = await client.post(f"{base}/api/v1/metrics", json={"metrics": points}, params=params)
        assert response.status_code == 202, response.text


def ws_url(base: str, client_id: str = "c1", query: str = "tenant_id=tenant1") -> str:
    return base.replace("http://", "ws://") + f"/ws/metrics/{client_id}?{query}"


@pytest.mark.parametrize("direct", [True, False], ids=["direct-writes", "queued"])
async def test_connect_subscribe_and_receive_updates(direct: bool) -> None:
    async with running(ws_direct_writes=direct) as (app, base), websockets.connect(ws_url(base)) as ws:
        assert (await recv(ws)) == {"type": "connected", "client_id": "c1", "tenant_id": "tenant1"}
        # Sanic's and websockets' objects have what the direct writer reads (else it is None)
        assert [outbox.direct is not None for outbox in app.ctx.outboxes.values()] == [direct]
        await ws.send(
            json.dumps({"type": "subscribe", "metrics": ["api.requests.count", "api.response.time"]})
        )
        subscribed = await recv(ws)
        assert subscribed["type"] == "subscribed" and subscribed["metrics"] == [
            "api.requests.count",
            "api.response.time",
        ]
        first = (await recv_type(ws, "metric_data"))["data"]
        assert first["value"] is None  # answered at once: no data yet
        await ingest(base, [{"name": "api.requests.count", "type": "count", "value": 3}], "tenant1")
        data = (await recv_data(ws, 3))["data"]
        assert data["metric"] == "api.requests.count" and data["value"] == 3 and data["window"] == "1m"
        assert data["aggregation"] == "sum" and data["group"] == {} and data["timestamp"].endswith("Z")
        await ws.send(json.dumps({"type": "ping"}))
        assert (await recv_type(ws, "pong")) == {"type": "pong"}


async def test_live_figures_are_in_the_service_metrics() -> None:
    async with running() as (_, base), websockets.connect(ws_url(base)) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "metrics": ["hits"], "interval_ms": 100}))
        await recv_type(ws, "metric_data")
        await ingest(base, [{"name": "hits", "type": "count", "value": 2}], "tenant1")
        await recv_data(ws, 2)  # read from a watch of `hits` once the metric exists
        async with httpx.AsyncClient() as client:
            text = (await client.get(f"{base}/api/v1/export/prometheus?tenant_id=tenant1")).text
    figures = dict(line.rsplit(" ", 1) for line in text.splitlines() if line.startswith("rtanalytics_live"))
    assert figures["rtanalytics_live_connections"] == "1.0"
    assert figures["rtanalytics_live_subscriptions"] == "1.0"
    assert figures["rtanalytics_live_watches"] == "1.0"
    assert float(figures["rtanalytics_live_evaluations_total"]) >= 2


async def test_a_full_live_query_with_groups() -> None:
    async with running() as (_, base), websockets.connect(ws_url(base)) as ws:
        await recv(ws)
        await ws.send(
            json.dumps(
                {
                    "type": "subscribe",
                    "id": "lat",
                    "metrics": ["latency"],
                    "window": "5m",
                    "aggregation": "max",
                    "group_by": ["endpoint"],
                    "filters": {"tags.endpoint": {"prefix": "/api"}},
                    "interval_ms": 100,
                }
            )
        )
        assert (await recv(ws))["id"] == "lat"
        await ingest(
            base,
            [
                {"name": "latency", "type": "max", "value": 10, "tags": {"endpoint": "/api/a"}},
                {"name": "latency", "type": "max", "value": 30, "tags": {"endpoint": "/api/b"}},
                {"name": "latency", "type": "max", "value": 99, "tags": {"endpoint": "/other"}},
            ],
            "tenant1",
        )
        got = {}
        while len(got) < 2:
            message = await recv_type(ws, "metric_data")
            assert message["id"] == "lat"
            if "endpoint" in message["data"]["group"]:
                got[message["data"]["group"]["endpoint"]] = message["data"]["value"]
        assert got == {"/api/a": 10, "/api/b": 30}


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        (json.dumps({"type": "dance"}), "unknown_type"),
        (json.dumps({"type": "subscribe", "metrics": []}), "invalid_query"),
        (json.dumps({"type": "subscribe", "metrics": ["m"], "interval_ms": 5}), "invalid_query"),
        (json.dumps({"type": "subscribe", "metrics": ["m"], "aggregation": "median"}), "invalid_query"),
        (json.dumps({"type": "unsubscribe", "id": "nope"}), "unknown_subscription"),
        (json.dumps({"type": "unsubscribe"}), "invalid_message"),
        (json.dumps({"type": "unsubscribe", "id": 5}), "invalid_message"),
    ],
)
async def test_every_bad_message_gets_an_error_code(raw: str, code: str) -> None:
    async with running() as (_, base), websockets.connect(ws_url(base)) as ws:
        await recv(ws)
        await ws.send(raw)
        error = await recv(ws)
        assert error["type"] == "error" and error["code"] == code and error["message"]
        await ws.send(json.dumps({"type": "ping"}))  # the connection lives on
        assert (await recv(ws))["type"] == "pong"


async def test_invalid_query_names_the_field() -> None:
    async with running() as (_, base), websockets.connect(ws_url(base)) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "metrics": ["m"], "filters": {"tags.k": {"like": 1}}}))
        error = await recv(ws)
        assert error["details"][0]["field"] == "filters.tags.k.like"


async def test_too_many_subscriptions() -> None:
    async with (
        running(max_subscriptions_per_connection=2) as (_, base),
        websockets.connect(ws_url(base)) as ws,
    ):
        await recv(ws)
        for i in range(2):
            await ws.send(json.dumps({"type": "subscribe", "metrics": [f"m{i}"]}))
            await recv_type(ws, "subscribed")
        await ws.send(json.dumps({"type": "subscribe", "metrics": ["m9"]}))
        error = await recv_type(ws, "error")
        assert error["code"] == "too_many_subscriptions" and "at most 2" in error["message"]


async def test_updates_are_coalesced_to_the_interval() -> None:
    async with running() as (_, base), websockets.connect(ws_url(base)) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "metrics": ["hits"], "interval_ms": 1000}))
        await recv_type(ws, "subscribed")
        await recv_type(ws, "metric_data")  # the first answer, at once
        started = time.monotonic()
        for _ in range(10):
            await ingest(base, [{"name": "hits", "type": "count"}], "tenant1")
            await asyncio.sleep(0.05)
        updates = []
        while time.monotonic() - started < 2.5:
            with contextlib.suppress(TimeoutError):
                updates.append(await recv(ws, 0.1))
        data = [u for u in updates if u["type"] == "metric_data"]
        # ten changes in about a second; at most one message a second, and the last is the total
        assert 1 <= len(data) <= 3 and data[-1]["data"]["value"] == 10


async def test_unsubscribe_stops_updates() -> None:
    async with running() as (_, base), websockets.connect(ws_url(base)) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "metrics": ["hits"], "id": "a", "interval_ms": 100}))
        await recv_type(ws, "metric_data")
        await ws.send(json.dumps({"type": "unsubscribe", "metrics": ["hits"]}))
        assert (await recv_type(ws, "unsubscribed"))["ids"] == ["a"]
        await ingest(base, [{"name": "hits", "type": "count"}], "tenant1")
        with pytest.raises(asyncio.TimeoutError):
            await recv_type(ws, "metric_data", timeout=0.5)


async def live_figures(app: Any) -> tuple[int, int]:
    return app.ctx.rta.live.connections, app.ctx.rta.live.subscriptions


async def wait_for(probe: Any, want: Any, timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while (got := await probe()) != want and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    return got


async def test_a_closed_connection_frees_its_subscriptions() -> None:
    async with running() as (app, base):
        async with websockets.connect(ws_url(base)) as ws:
            await recv(ws)
            for name in ("a", "b"):
                await ws.send(json.dumps({"type": "subscribe", "metrics": [name]}))
                await recv_type(ws, "subscribed")
            assert await live_figures(app) == (1, 2)
        assert await wait_for(lambda: live_figures(app), (0, 0), 5.0) == (0, 0)


async def test_a_peer_that_stops_answering_pings_is_closed_and_its_subscriptions_freed() -> None:
    async with (
        running(ws_ping_interval_s=1, ws_ping_timeout_s=1) as (app, base),
        websockets.connect(ws_url(base), ping_interval=None) as alive,
    ):
        dead = await websockets.connect(ws_url(base, "c2"), ping_interval=None)
        for ws in (alive, dead):
            await recv(ws)
            await ws.send(json.dumps({"type": "subscribe", "metrics": ["m"]}))
            await recv_type(ws, "subscribed")
        assert await live_figures(app) == (2, 2)
        # The dead client's process hangs: its kernel still takes the bytes, but it reads
        # nothing, so it never answers a ping.
        dead.transport.pause_reading()
        # The server's ping gets no pong within the timeout: closed, subscription freed.
        assert await wait_for(lambda: live_figures(app), (1, 1), 6.0) == (1, 1)
        await asyncio.sleep(1.5)  # the live client answers its pings and stays
        assert await live_figures(app) == (1, 1)
        await alive.send(json.dumps({"type": "ping"}))
        assert (await recv_type(alive, "pong"))["type"] == "pong"
        dead.transport.abort()


async def test_tenants_are_isolated() -> None:
    async with running() as (_, base), websockets.connect(ws_url(base, query="tenant_id=a")) as ws:
        await recv(ws)
        await ws.send(json.dumps({"type": "subscribe", "metrics": ["secret"], "interval_ms": 100}))
        first = await recv_type(ws, "metric_data")
        assert first["data"]["value"] is None
        await ingest(base, [{"name": "secret", "type": "count"}], "b")
        with pytest.raises(asyncio.TimeoutError):
            await recv_type(ws, "metric_data", timeout=0.5)


async def test_api_keys_decide_the_tenant() -> None:
    async with running(api_keys={"k1": "alpha"}) as (_, base):
        async with websockets.connect(ws_url(base, query="api_key=nope")) as ws:
            assert (await recv(ws))["code"] == "unauthorized"
            with pytest.raises(websockets.ConnectionClosed):
                await recv(ws)
        async with websockets.connect(ws_url(base, query="api_key=k1&tenant_id=beta")) as ws:
            assert (await recv(ws))["code"] == "forbidden"
        async with websockets.connect(ws_url(base, query="api_key=k1")) as ws:
            assert (await recv(ws))["tenant_id"] == "alpha"


async def test_alert_transitions_are_pushed() -> None:
    async with running() as (app, base), websockets.connect(ws_url(base)) as ws:
        await recv(ws)
        await app.ctx.rta.alerts.create(
            "tenant1",
            {"alert_name": "Hot", "metric": "temp", "condition": {"operator": ">", "threshold": 50}},
        )
        await ingest(base, [{"name": "temp", "type": "max", "value": 80}], "tenant1")
        alert = await recv_type(ws, "alert", timeout=5)
        assert (
            alert["data"]["alert_name"] == "Hot"
            and alert["data"]["state"] == "firing"
            and alert["data"]["value"] == 80
        )


class SlowSocket:
    """Stands in for a client that reads slowly: each send takes a while."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    async def send(self, text: str) -> None:
        await asyncio.sleep(0.05)
        self.sent.append(json.loads(text))


def _update(value: float, sub: str = "s", metric: str = "m") -> LiveUpdate:
    """Subscription `sub`'s one row, of `metric`, changed to `value` (at time `value`)."""
    return LiveUpdate(sub, (ResultRow(metric, {}, "sum", value, None, 60_000),), value)


class Gate:
    """A direct writer that takes frames while `open`, and refuses them (writes nothing) when not.
    `written`: every frame taken; `writes`: the frames of each socket write."""

    def __init__(self) -> None:
        self.open = True
        self.written: list[bytes] = []
        self.writes: list[list[bytes]] = []

    def __call__(self, texts: list[bytes]) -> bool:
        if self.open:
            self.written.extend(texts)
            self.writes.append(texts)
        return self.open


async def test_a_slow_reader_gets_the_newest_value_and_a_lagged_notice() -> None:
    outbox = Outbox()
    outbox.announce("s", {"type": "subscribed", "id": "s"})
    ws = SlowSocket()
    pump = asyncio.get_running_loop().create_task(outbox.pump(ws))  # type: ignore[arg-type]
    for value in range(100):  # far faster than the socket drains; put never waits
        outbox.put(_update(float(value)))
        await asyncio.sleep(0)
    await asyncio.sleep(0.5)
    pump.cancel()
    data = [m for m in ws.sent if m["type"] == "metric_data"]
    lagged = [m for m in ws.sent if m["type"] == "lagged"]
    assert data[-1]["data"]["value"] == 99  # the newest always arrives
    assert len(data) < 10 and lagged and sum(m["dropped"] for m in lagged) + len(data) == 100
    assert len(outbox.pending) == 0  # bounded: at most one value per metric x group waits


class FakeTransport:
    def __init__(self) -> None:
        self.written = b""
        self.buffered = 0
        self.closing = False

    def is_closing(self) -> bool:
        return self.closing

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def write(self, data: bytes) -> None:
        self.written += data


def fake_socket(transport: FakeTransport) -> Any:
    from types import SimpleNamespace

    from websockets.protocol import State

    return SimpleNamespace(
        ws_proto=SimpleNamespace(_state=State.OPEN),  # (what websockets' `state` property returns)
        io_proto=SimpleNamespace(transport=transport),
        conn_mutex=asyncio.Lock(),
    )


@pytest.mark.parametrize("size", [5, 125, 126, 1_023, 1_024, 65_535, 65_536, 200_000])
async def test_direct_writes_are_well_formed_text_frames(size: int) -> None:
    from websockets.frames import Frame, Opcode
    from websockets.streams import StreamReader

    from rtanalytics.entrypoints.http.live_bp import direct_writer

    transport = FakeTransport()
    write = direct_writer(fake_socket(transport))
    assert write is not None
    text = "é" * (size // 2) + "x" * (size % 2)  # multi-byte UTF-8: the length is in bytes
    assert write([text.encode()])  # one frame (its header from a table below 1 KiB)
    assert write([text.encode(), b"next"])  # two frames in one socket write
    reader = StreamReader()
    reader.feed_data(transport.written)
    reader.feed_eof()
    for want in (text, text, "next"):
        parser = Frame.parse(reader.read_exact, mask=False)
        try:
            next(parser)
        except StopIteration as done:
            frame = done.value
        assert frame.opcode is Opcode.TEXT and frame.fin and frame.data.decode() == want
    assert reader.at_eof()


async def test_direct_writes_wait_for_a_busy_or_slow_connection() -> None:
    from websockets.protocol import State

    from rtanalytics.entrypoints.http.live_bp import DIRECT_WRITE_LIMIT, direct_writer

    transport = FakeTransport()
    socket = fake_socket(transport)
    write = direct_writer(socket)
    assert write is not None
    transport.buffered = DIRECT_WRITE_LIMIT + 1  # a slow reader
    assert not write([b"x"])
    transport.buffered = 0
    async with socket.conn_mutex:  # Sanic is sending (a ping, a close)
        assert not write([b"x"])
    socket.ws_proto._state = State.CLOSING  # a close frame went out or came in
    assert not write([b"x"])
    socket.ws_proto._state = State.OPEN
    transport.closing = True
    assert not write([b"x"])
    assert transport.written == b""
    transport.closing = False
    assert write([b"x"]) and transport.written


async def test_no_direct_writer_without_the_attributes_it_reads() -> None:
    """A socket object without what the writer relies on gets none: the outbox then sends
    everything through ws.send."""
    from types import SimpleNamespace

    from rtanalytics.entrypoints.http.live_bp import direct_writer

    assert direct_writer(fake_socket(FakeTransport())) is not None
    assert direct_writer(SimpleNamespace()) is None  # type: ignore[arg-type]
    unlike_a_lock = fake_socket(FakeTransport())
    unlike_a_lock.conn_mutex = SimpleNamespace(locked=lambda: False)
    assert direct_writer(unlike_a_lock) is None
    flag_elsewhere = fake_socket(FakeTransport())
    del flag_elsewhere.conn_mutex._locked  # a Lock keeping its flag under another name
    assert direct_writer(flag_elsewhere) is None
    closed = fake_socket(FakeTransport())
    closed.io_proto.transport = None  # (Sanic drops it once the connection is gone)
    assert direct_writer(closed) is None


async def test_an_outbox_writes_directly_only_when_nothing_waits() -> None:
    gate = Gate()
    written = gate.written
    outbox = Outbox(gate)
    outbox.put(_update(1.0))  # not announced yet: `subscribed` must go first
    assert written == [] and outbox.pending
    outbox.announce("s", {"type": "subscribed", "id": "s"})
    ws = SlowSocket()
    pump = asyncio.get_running_loop().create_task(outbox.pump(ws))  # type: ignore[arg-type]
    outbox.put(_update(2.0))  # the queue is not empty: this waits behind it, in order
    assert written == []
    await asyncio.sleep(0.3)
    assert [m["type"] for m in ws.sent] == ["subscribed", "metric_data", "lagged"]
    assert ws.sent[1]["data"]["value"] == 2.0  # the newest value replaced the older one, said so
    outbox.put(_update(3.0))  # nothing waits now: written at once (its only subscription), no pump
    assert len(written) == 1 and json.loads(written[0])["data"]["value"] == 3.0
    assert not outbox.pending and not outbox.wake.is_set()
    gate.open = False  # the connection cannot take more now: queue, then the pump sends it
    outbox.put(_update(4.0))
    await asyncio.sleep(0.2)
    pump.cancel()
    assert ws.sent[-1]["data"]["value"] == 4.0 and len(written) == 1


async def test_an_update_never_overtakes_one_that_waits_in_the_queue() -> None:
    """Once a write was refused and the update queued, later updates queue behind it (the
    pump sends the newest), even when the connection could take a direct write again."""
    gate = Gate()
    written = gate.written
    outbox = Outbox(gate)
    outbox.heads["s"] = b'{"type":"metric_data","id":"s","data":'  # announced, its message sent
    outbox.put(_update(1.0))
    await asyncio.sleep(0)
    assert [json.loads(t)["data"]["value"] for t in written] == [1.0]
    gate.open = False
    outbox.put(_update(2.0))
    await asyncio.sleep(0)  # refused: queued for the pump (not running here)
    gate.open = True
    outbox.put(_update(3.0))
    await asyncio.sleep(0)
    assert len(written) == 1  # 3.0 waits behind 2.0, and replaces it
    waiting = [json.loads(outbox.heads["s"] + rest) for rest in outbox.pending["s"].values()]
    assert [m["data"]["value"] for m in waiting] == [3.0]
    assert outbox.dropped == {"s": 1}


async def test_the_updates_of_one_turn_go_out_in_one_write_and_before_what_follows() -> None:
    """A connection's subscriptions pushed in one turn of the event loop (one live-query tick)
    cost one socket write; a control message said later in the turn goes after them."""
    direct = Gate()
    writes = direct.writes
    outbox = Outbox(direct)
    for sub in ("a", "b", "c"):
        outbox.announce(sub, {"type": "subscribed", "id": sub})
    ws = SlowSocket()
    pump = asyncio.get_running_loop().create_task(outbox.pump(ws))  # type: ignore[arg-type]
    await asyncio.sleep(0.3)  # the three `subscribed` sent
    outbox.put(_update(1.0, "a", "a"))
    outbox.put(_update(2.0, "b", "b"))
    await asyncio.sleep(0)
    assert [[json.loads(t)["id"] for t in texts] for texts in writes] == [["a", "b"]]
    outbox.put(_update(3.0, "c", "c"))
    outbox.say({"type": "pong"})  # the held frame is written first, then the pump sends this
    assert [json.loads(t)["id"] for t in writes[-1]] == ["c"]
    outbox.put(_update(4.0, "a", "a"))  # queued behind the pong now, not held
    outbox.forget("a")
    await asyncio.sleep(0.3)
    assert [m["type"] for m in ws.sent[3:]] == ["pong"] and len(writes) == 2
    outbox.put(_update(5.0, "b", "b"))  # held, then unsubscribed in the same turn: never written
    outbox.forget("b")
    await asyncio.sleep(0)
    pump.cancel()
    assert len(writes) == 2


async def test_a_connection_with_one_subscription_writes_at_once() -> None:
    """Its update (every row of it) is written inside `put`: no other subscription could share
    the write. With a second subscription, updates wait for the turn's end again."""
    direct = Gate()
    writes = direct.writes
    outbox = Outbox(direct)
    outbox.heads["a"] = b'{"type":"metric_data","id":"a","data":'
    rows = tuple(ResultRow("m", {"host": h}, "sum", 1.0, None, 60_000) for h in ("x", "y"))
    outbox.put(LiveUpdate("a", rows, 1.0))
    assert [[json.loads(t)["data"]["group"] for t in texts] for texts in writes] == [
        [{"host": "x"}, {"host": "y"}]
    ]
    outbox.heads["b"] = b'{"type":"metric_data","id":"b","data":'
    outbox.put(_update(2.0, "a"))
    outbox.put(_update(3.0, "b"))
    assert len(writes) == 1
    await asyncio.sleep(0)
    assert [[json.loads(t)["id"] for t in texts] for texts in writes[1:]] == [["a", "b"]]
    outbox.forget("b")
    outbox.put(_update(4.0, "a"))
    assert len(writes) == 3 and json.loads(writes[-1][0])["data"]["value"] == 4.0


def test_frames_held_in_a_loop_that_closed_do_not_stall_the_next_loop() -> None:
    """A loop that ends with frames held (its flush callback never ran) leaves the next loop's
    outboxes flushing as usual."""
    direct = Gate()
    written = direct.written

    def push() -> None:
        outbox = Outbox(direct)
        for sub in ("s", "t"):  # (a connection with one subscription writes at once)
            outbox.heads[sub] = b'{"type":"metric_data","id":"%s","data":' % sub.encode()
        outbox.put(_update(1.0))

    async def push_and_wait() -> None:
        push()
        await asyncio.sleep(0)

    loop = asyncio.new_event_loop()
    loop.call_soon(push)
    loop.call_soon(loop.stop)  # the loop stops before the flush it scheduled runs
    loop.run_forever()
    loop.close()
    assert written == []
    asyncio.run(push_and_wait())
    assert len(written) == 1
