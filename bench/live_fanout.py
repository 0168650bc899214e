"""The Python cost of one subscriber's live update, without sockets: 1,000 subscriptions on one
metric, LiveQueries -> Outbox -> the direct frame writer, into a transport that only counts.

    .venv/bin/python bench/live_fanout.py [--subscribers 1000] [--ticks 200]

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
    """The attributes of Sanic's WebsocketImplProtocol that direct_writer uses."""
    writable = asyncio.Event()
    writable.set()
    return SimpleNamespace(
        ws_proto=SimpleNamespace(state=State.OPEN),
        io_proto=SimpleNamespace(transport=CountingTransport(), _can_write=writable),
        conn_mutex=asyncio.Lock(),
    )


async def main(subscribers: int, ticks: int) -> None:
    clock = ManualClock(1_700_000_000.0)
    engine = Engine(clock=clock)
    live = LiveQueries(engine, clock, max_per_tenant=10 * subscribers)
    sockets = []
    for i in range(subscribers):
        ws = socket_like()
        sockets.append(ws)
        outbox = Outbox(direct_writer(ws))  # type: ignore[arg-type]
        connection = live.connect("default", f"c{i}", outbox.put)
        await live.subscribe(
            connection, {"type": "subscribe", "metrics": ["bench.marker"], "window": "1m", "interval_ms": 100}
        )
        outbox.announced.update(connection.subscriptions)
    per_update = []
    for k in range(ticks):
        clock.advance(0.25)
        await engine.ingest([{"name": "bench.marker", "type": "max", "value": float(k + 1)}])
        live.notice("default", frozenset(["bench.marker"]))
        started = time.perf_counter()
        await live.run_due()
        await asyncio.sleep(0)  # the turn ends: outboxes write what the tick held back
        per_update.append((time.perf_counter() - started) * 1e6 / subscribers)
    writes = sum(ws.io_proto.transport.writes for ws in sockets)
    print(
        f"one subscriber's update: median {statistics.median(per_update[ticks // 10 :]):.2f} us of Python "
        f"({writes:,} frames written for {subscribers:,} subscribers x {ticks} changes)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1_000)
    parser.add_argument("--ticks", type=int, default=200)
    args = parser.parse_args()
    asyncio.run(main(args.subscribers, args.ticks))
