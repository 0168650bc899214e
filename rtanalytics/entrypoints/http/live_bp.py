"""WS /ws/metrics/{client_id}: live queries over WebSocket (SPEC §4).

Each connection has an Outbox: control messages in order, and per subscription only the newest
value of each metric x group. A client that reads slower than updates arrive loses the older
values (never the newest), is told so with a `lagged` message, and slows no one else: the
engine and the live-query loop only ever put into the outbox, which never waits.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import orjson
from sanic import Blueprint, Request
from sanic.server.websockets.impl import WebsocketImplProtocol
from websockets.protocol import State

from rtanalytics.adapters.notify import messages
from rtanalytics.core.durations import format_duration, format_timestamp
from rtanalytics.core.errors import LimitExceededError, NotFoundError, RtAnalyticsError, ValidationError
from rtanalytics.core.live import Connection, LiveUpdate
from rtanalytics.core.results import ResultRow
from rtanalytics.entrypoints.http.common import services, tenant_of
from rtanalytics.ports.notifier import AlertMessage

bp = Blueprint("live")
CONTROL_LIMIT = 1_000


class Outbox:
    """What one connection still has to send.

    `direct`, when given, writes text frames if the connection can take them (see
    `direct_writer`): an update to a client that keeps up then costs no wake-up of the pump
    task and no queueing. A connection with one subscription writes its update at once. With
    several, the frames of one turn of the event loop (a live-query tick pushes every
    subscription due at once) are written together, once the turn's pushes are done: the
    subscriptions due then cost one socket write, not one each. Anything else, and everything
    while something is queued or being sent, goes through the queues and the pump, in order; a
    control message first writes the frames held back.
    """

    # (slots: a push reads the outbox's fields where the object is, with no second cache miss)
    __slots__ = ("control", "direct", "dropped", "heads", "held", "pending", "quiet", "sending", "wake")

    def __init__(self, direct: Callable[[list[bytes]], bool] | None = None) -> None:
        self.control: deque[dict[str, Any]] = deque(maxlen=CONTROL_LIMIT)
        self.pending: dict[str, dict[tuple[str, Any], bytes]] = {}  # each `data`, see _data_tail
        self.dropped: dict[str, int] = {}
        # announced subscriptions -> their metric_data messages up to the `data` object, as bytes
        self.heads: dict[str, bytes] = {}
        self.wake = asyncio.Event()
        self.direct = direct
        self.sending = False  # the pump holds messages it has not finished sending
        # whether an update may be written directly: a direct writer, nothing queued or sending
        # (one flag, so that a push to a client that keeps up reads no queue)
        self.quiet = direct is not None
        self.held: list[LiveUpdate] = []  # updates to write when this turn of the event loop ends

    def _settle(self) -> None:
        self.quiet = self.direct is not None and not self.sending and not self.control and not self.pending

    def say(self, message: dict[str, Any]) -> None:
        self.flush()
        self.control.append(message)
        self.quiet = False
        self.wake.set()

    def announce(self, sub_id: str, message: dict[str, Any]) -> None:
        """Send `subscribed` before any data of the subscription."""
        self.flush()
        self.control.append(message)
        self.quiet = False
        self.heads[sub_id] = _data_head(sub_id)
        self.wake.set()

    def forget(self, sub_id: str) -> None:
        self.held = [u for u in self.held if u.subscription != sub_id]
        self.pending.pop(sub_id, None)
        self.dropped.pop(sub_id, None)
        self.heads.pop(sub_id, None)

    def put(self, update: LiveUpdate) -> None:
        """The live-query loop's sink: keep the newest value per metric x group."""
        heads = self.heads
        if self.quiet and update.subscription in heads:
            held = self.held
            if not held and len(heads) == 1:
                # The connection's only subscription: nothing else this turn could share its
                # write, and written now the outbox's objects are read once, while in cache
                # (held to the turn's end, they were read again: ~2 us more a push, cold)
                self._write([update])
                return
            if not held:  # flush when this turn's pushes are done: one callback for all outboxes
                loop = _running_loop()
                waiting = _holding.get(loop)
                if waiting is None:
                    waiting = _holding[loop] = []
                    loop.call_soon(_flush_held, loop)
                waiting.append(self)
            held.append(update)
            return
        self._queue(update.subscription, update.rows, update.at)

    def _queue(self, sub_id: str, rows: Sequence[ResultRow], at: float) -> None:
        """For the pump: the newest data of each metric x group, counting what it replaces."""
        held = self.pending.setdefault(sub_id, {})
        for row in rows:
            key = (row.metric, tuple(row.group.items()))
            if key in held:
                self.dropped[sub_id] = self.dropped.get(sub_id, 0) + 1
            held[key] = _data_tail(row, at)
        self.quiet = False
        self.wake.set()

    def flush(self) -> None:
        """Write the frames held back this turn, in one socket write; if the connection cannot
        take them now, they go to the queue (the pump sends them when it can)."""
        held = self.held
        if held:
            self.held = []
            self._write(held)

    def _write(self, updates: list[LiveUpdate]) -> None:
        """Write the updates' frames now, in one socket write, or queue them for the pump if
        the connection cannot take them."""
        assert self.direct is not None  # (only called while `quiet`, or with frames held)
        heads = self.heads
        if len(updates) == 1 and len(updates[0].rows) == 1:  # the usual push: one update of one row
            update = updates[0]
            payloads = [heads[update.subscription] + _data_tail(update.rows[0], update.at)]
        else:
            payloads = [heads[u.subscription] + _data_tail(row, u.at) for u in updates for row in u.rows]
        if self.direct(payloads):
            return
        for update in updates:
            self._queue(update.subscription, update.rows, update.at)

    async def pump(self, ws: WebsocketImplProtocol) -> None:
        while True:
            await self.wake.wait()
            self.wake.clear()
            self.sending = True
            self.quiet = False
            try:
                await self._send_queued(ws)
            finally:
                self.sending = False
                self._settle()

    async def _send_queued(self, ws: WebsocketImplProtocol) -> None:
        self.flush()  # (say() already did; held frames go before anything the pump sends)
        while self.control:
            await ws.send(orjson.dumps(self.control.popleft()).decode())
        for sub_id in [s for s in self.pending if s in self.heads]:
            rows = self.pending.pop(sub_id)
            head = self.heads[sub_id]
            for data in rows.values():
                await ws.send((head + data).decode())
            dropped = self.dropped.pop(sub_id, 0)
            if dropped:
                await ws.send(orjson.dumps({"type": "lagged", "id": sub_id, "dropped": dropped}).decode())
            while self.control:  # answers to the client stay prompt
                await ws.send(orjson.dumps(self.control.popleft()).decode())


DIRECT_WRITE_LIMIT = 64 * 1024  # bytes already waiting in the socket's buffer: past this, queue

# Outboxes with frames held back in this turn, per event loop (a loop closed before its
# callback ran must not leave the next loop's outboxes waiting for a flush never scheduled)
_holding: dict[asyncio.AbstractEventLoop, list[Outbox]] = {}


_running_loop = asyncio.get_running_loop


def _flush_held(loop: asyncio.AbstractEventLoop) -> None:
    for outbox in _holding.pop(loop, ()):
        outbox.flush()


def direct_writer(ws: WebsocketImplProtocol) -> Callable[[list[bytes]], bool] | None:
    """A function that writes text frames (their UTF-8 payloads) now, in one socket write, and
    says True, or says False (and writes nothing) when the connection is not open, Sanic is
    itself sending, or the socket's buffer holds more than DIRECT_WRITE_LIMIT (a slow reader:
    its updates then queue, and lag).

    It writes the frame to the transport itself (server frames are not masked): through
    `ws.send` each message took a lock, websockets' framing objects and a task switch, ~15 us,
    which for 1,000 subscribers was most of what the live path cost the service. It relies on
    attributes of Sanic's WebsocketImplProtocol; None when they are not there, and the Outbox
    then sends everything through `ws.send`.

    Whether the transport asked Sanic to pause writing is not read: it asks when its buffer
    passes its high-water mark (64 KiB), and the buffer's size is read anyway. A write while
    paused only appends to that buffer, in order, bounded by the same limit; Sanic's own sends
    wait for the pause to end holding `conn_mutex`, which refuses direct writes meanwhile.
    """
    proto = getattr(ws, "ws_proto", None)
    mutex = getattr(ws, "conn_mutex", None)
    transport = getattr(getattr(ws, "io_proto", None), "transport", None)
    if (
        transport is None
        or not isinstance(mutex, asyncio.Lock)
        # read as attributes: `locked()` and the `state` property return them, and a Python
        # call a push was ~5 % of its Python
        or not isinstance(getattr(mutex, "_locked", None), bool)
        or not isinstance(getattr(proto, "_state", None), State)
    ):
        return None
    return _DirectWriter(transport, proto, mutex).write


class _DirectWriter:
    """What `direct_writer`'s function reads, in one object with slots: with 1,000 subscribers
    pushed at once, each object a push reads is a cache miss (a closure's cells, the Event and
    Sanic's protocol object were four more)."""

    __slots__ = ("mutex", "proto", "transport")

    def __init__(self, transport: Any, proto: Any, mutex: Any) -> None:
        # Sanic drops its own reference once the connection closes; this one then says
        # is_closing(), and writes are refused
        self.transport = transport
        self.proto = proto
        self.mutex = mutex

    def write(self, payloads: list[bytes], OPEN: State = State.OPEN) -> bool:
        transport = self.transport
        if (
            self.proto._state is not OPEN
            or transport.is_closing()
            or self.mutex._locked
            or transport.get_write_buffer_size() > DIRECT_WRITE_LIMIT
        ):
            return False
        if len(payloads) == 1:
            payload = payloads[0]
            size = len(payload)
            transport.write((_HEADS[size] if size < 1024 else _frame_head(size)) + payload)
        else:
            transport.write(b"".join([part for p in payloads for part in (_frame_head(len(p)), p)]))
        return True


def _frame_head(size: int) -> bytes:
    """The header of an unmasked, final text frame of `size` bytes (RFC 6455 5.2)."""
    if size < 126:
        return bytes((0x81, size))
    if size < 1 << 16:
        return b"\x81\x7e" + size.to_bytes(2, "big")
    return b"\x81\x7f" + size.to_bytes(8, "big")


# The headers of frames up to 1 KiB, made once (a live update is ~150-300 bytes: making its
# header was a call and two allocations a push)
_HEADS = [_frame_head(size) for size in range(1024)]


def _data_head(sub_id: str) -> bytes:
    """A metric_data message up to its `data` object."""
    return b'{"type":"metric_data","id":' + orjson.dumps(sub_id) + b',"data":'


class _RowTexts:
    """Subscriptions that share a query get the same row objects at the same moment: each row's
    `data` JSON is made once per evaluation, not once per subscriber (~10 us each saved with
    1,000 subscribers). Rows are kept with their text, so an id is not reused while cached."""

    def __init__(self) -> None:
        self.at = 0.0
        self.texts: dict[int, tuple[ResultRow, bytes]] = {}

    def of(self, row: ResultRow, at: float) -> bytes:
        """A metric_data message from its `data` object to its end, as JSON: the `data` object
        and the message's closing brace."""
        if at != self.at:
            self.texts.clear()
            self.at = at
        held = self.texts.get(id(row))
        if held is not None and held[0] is row:
            return held[1]
        data = {
            "metric": row.metric,
            "group": row.group,
            "aggregation": row.aggregation,
            "value": row.value,
            "timestamp": format_timestamp(at),
            "window": format_duration(row.window_ms),
        }
        text = orjson.dumps(data) + b"}"
        self.texts[id(row)] = (row, text)
        return text


_data_tail = _RowTexts().of


def _error(code: str, message: str, details: Any = ()) -> dict[str, Any]:
    return {"type": "error", "code": code, "message": message, "details": list(details)}


def alert_message(message: AlertMessage) -> dict[str, Any]:
    """An alert transition for WebSocket clients: the same JSON a webhook receives."""
    return {"type": "alert", "data": messages.webhook(message)}


async def _handle(app: Any, connection: Connection, outbox: Outbox, raw: str | bytes) -> None:
    try:
        message = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        outbox.say(_error("invalid_json", f"not JSON: {exc}"))
        return
    if not isinstance(message, dict):
        outbox.say(_error("invalid_message", "a message is a JSON object with a `type`"))
        return
    kind = message.get("type")
    if kind == "ping":
        outbox.say({"type": "pong"})
    elif kind == "subscribe":
        try:
            live = await app.live.subscribe(connection, message)
        except ValidationError as exc:
            details = [{"field": p.field, "message": p.message} for p in exc.details]
            outbox.say(_error("invalid_query", exc.message, details))
            return
        except LimitExceededError as exc:
            outbox.say(_error("too_many_subscriptions", exc.message))
            return
        outbox.announce(
            live.id,
            {
                "type": "subscribed",
                "id": live.id,
                "metrics": list(live.query.metrics),
                "interval_ms": int(live.interval_s * 1000),
            },
        )
        await app.live.push_now(connection, live.id)
    elif kind == "unsubscribe":
        sub_id = message.get("id")
        metrics = message.get("metrics")
        if sub_id is None and not (isinstance(metrics, list) and all(isinstance(m, str) for m in metrics)):
            outbox.say(_error("invalid_message", "unsubscribe needs an `id` or a list of `metrics`"))
            return
        if sub_id is not None and not isinstance(sub_id, str):
            outbox.say(_error("invalid_message", "unsubscribe's `id` must be a string"))
            return
        try:
            removed = app.live.unsubscribe(connection, sub_id, metrics or ())
        except NotFoundError as exc:
            outbox.say(_error("unknown_subscription", exc.message))
            return
        for i in removed:
            outbox.forget(i)
        outbox.say({"type": "unsubscribed", "ids": removed})
    else:
        outbox.say(
            _error("unknown_type", f"unknown message type {kind!r}; use subscribe, unsubscribe or ping")
        )


@bp.websocket("/ws/metrics/<client_id:str>")  # type: ignore[untyped-decorator]
async def feed(request: Request, ws: WebsocketImplProtocol, client_id: str) -> None:
    app = services(request)
    try:
        tenant = tenant_of(request)
    except RtAnalyticsError as exc:
        await ws.send(orjson.dumps(_error(exc.code, exc.message)).decode())
        await ws.close(code=4401 if exc.code == "unauthorized" else 4403, reason=exc.code)
        return
    outbox = Outbox(direct_writer(ws) if app.config.ws_direct_writes else None)
    connection = app.live.connect(tenant, client_id, outbox.put)
    request.app.ctx.outboxes[connection] = outbox
    sender = asyncio.get_running_loop().create_task(outbox.pump(ws))
    outbox.say({"type": "connected", "client_id": client_id, "tenant_id": tenant})
    try:
        async for raw in ws:
            if raw is None:
                break
            await _handle(app, connection, outbox, raw)
    finally:
        app.live.disconnect(connection)
        request.app.ctx.outboxes.pop(connection, None)
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await sender
