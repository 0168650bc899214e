"""The Python cost of one subscriber's live update, without sockets: 1,000 subscriptions on one
metric, LiveQueries -> Outbox -> the direct frame writer, into a transport that only counts.

    .venv/bin/python bench/live_fanout.py [--subscribers 1000] [--ticks 200] [--idle 0.25]

--idle sleeps that long before each change, as the service does between the bench's marker
changes (4 a second): on this VM an idle CPU comes back with cold caches, and the same Python
then takes ~3x as long per update (~3 -> ~12 us); without it, the figure is the warm one.

What a real socket adds on top (the kernel's TCP send, ~9 us a message on loopback) is in
bench/websocket.py's figures; this isolates the service's own Python per update.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from types import SimpleNamespace

from websockets.protocol import State

from rtanalytics import Engine
from rtanalytics.adapters.clock import ManualClock
from rtanalytics.core.live import LiveQueries
from rtanalytics.entrypoints.http.live_bp import Outbox, direct_writer


class CountingTransport:
    def __init__(self) -> None:
        self.writes = 0

    def is_closing(self) -> bool:
        return False

    def get_write_buffer_size(self) -> int:
        return 0

    def write(self, data: bytes) -> None:
        self.writes += 1


def socket_like() -> SimpleNamespace:
    """The attributes of Sanic's WebsocketImplProtocol that direct_writer uses, and a `send`
    for the messages the Outbox's pump sends (`subscribed`)."""

    async def send(text: str) -> None:
        pass

    return SimpleNamespace(
        send=send,
        ws_proto=SimpleNamespace(_state=State.OPEN),
        io_proto=SimpleNamespace(transport=CountingTransport()),
        conn_mutex=asyncio.Lock(),
    )


async def main(subscribers: int, ticks: int, idle: float) -> None:
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(clock=clock)
    live = LiveQueries(engine, clock, max_per_tenant=10 * subscribers)
    sockets = []
    pumps = []
    for i in range(subscribers):
        ws = socket_like()
        sockets.append(ws)
        outbox = Outbox(direct_writer(ws))  # type: ignore[arg-type]
        connection = live.connect("default", f"c{i}", outbox.put)
        subscribed = await live.subscribe(
            connection, {"type": "subscribe", "metrics": ["bench.marker"], "window": "1m", "interval_ms": 100}
        )
        outbox.announce(subscribed.id, {"type": "subscribed", "id": subscribed.id})
        pumps.append(asyncio.get_running_loop().create_task(outbox.pump(ws)))  # type: ignore[arg-type]
    await asyncio.sleep(0.1)  # the pumps send `subscribed`; from here on updates are written directly
    per_update = []
    for k in range(ticks):
        if idle:
            time.sleep(idle)
        clock.advance(0.25)
        await engine.ingest([{"name": "bench.marker", "type": "max", "value": float(k + 1)}])
        live.notice("default", frozenset(["bench.marker"]))
        started = time.perf_counter()
        await live.run_due()
        await asyncio.sleep(0)  # the turn ends: outboxes write what the tick held back
        per_update.append((time.perf_counter() - started) * 1e6 / subscribers)
    for pump in pumps:
        pump.cancel()
    writes = sum(ws.io_proto.transport.writes for ws in sockets)
    print(
        f"one subscriber's update: median {statistics.median(per_update[ticks // 10 :]):.2f} us of Python "
        f"({writes:,} frames written for {subscribers:,} subscribers x {ticks} changes)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1_000)
    parser.add_argument("--ticks", type=int, default=200)
    parser.add_argument("--idle", type=float, default=0.0, help="seconds asleep before each change")
    args = parser.parse_args()
    asyncio.run(main(args.subscribers, args.ticks, args.idle))
