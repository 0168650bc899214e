"""Live queries under load: N WebSocket subscribers (interval_ms=100) while points are ingested.

Prints the latency from an ingest request's response to a subscriber's receipt of the new value
(p50, p99), the ingest throughput with and without the subscribers, and memory per idle
connection. Subscribers run in a separate process from the service; load comes from wrk.

    .venv/bin/python bench/websocket.py [--subscribers 1000] [--seconds 10] [--rounds 3] [--idle 5000] [--shared-cpus]

By default the service is pinned to CPU 0 and everything that makes load (wrk, the subscriber
process, the marker poster) to the other CPUs, in both the run alone and the run with
subscribers: the 1,000 Python clients decode ~4,000 messages a second, and on a 2-core machine
they would otherwise take the service's CPU and count as "lost" throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import random
import statistics
import sys
import time
from pathlib import Path

import httpx
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import body_dir, rtanalytics_server, wrk
from workload import batch


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


async def subscribers(url: str, count: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    """`count` connections subscribed to the marker metric; report (value, receipt time) pairs."""
    received: list[tuple[float, float]] = []
    ready = 0

    async def one(i: int) -> None:
        nonlocal ready
        async with websockets.connect(f"{url}/ws/metrics/sub{i}", max_queue=None) as ws:
            await ws.send(
                json.dumps(
                    {
                        "type": "subscribe",
                        "metrics": ["bench.marker"],
                        "aggregation": "max",
                        "window": "1m",
                        "interval_ms": 100,
                    }
                )
            )
            ready += 1
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                try:
                    message = json.loads(await asyncio.wait_for(ws.recv(), timeout=1))
                except TimeoutError:
                    continue
                if message["type"] == "metric_data" and message["data"]["value"] is not None:
                    received.append((message["data"]["value"], time.time()))

    tasks = [asyncio.get_running_loop().create_task(one(i)) for i in range(count)]
    while ready < count:
        await asyncio.sleep(0.1)
    out.put(("ready", None))
    await asyncio.gather(*tasks, return_exceptions=True)
    out.put(("received", received))


def run_subscribers(url: str, count: int, seconds: float, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    asyncio.run(subscribers(url, count, seconds, out))


async def markers(base: str, seconds: float) -> dict[float, float]:
    """Post a new marker value every 250 ms; remember when each ingest was answered."""
    sent: dict[float, float] = {}
    async with httpx.AsyncClient() as client:
        deadline = time.monotonic() + seconds
        value = 1.0
        while time.monotonic() < deadline:
            response = await client.post(
                f"{base}/api/v1/metrics",
                json={"metrics": [{"name": "bench.marker", "type": "max", "value": value}]},
            )
            sent[value] = time.time()
            assert response.status_code == 202
            value += 1
            await asyncio.sleep(0.25)
    return sent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--subscribers", type=int, default=1_000)
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--idle", type=int, default=5_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--port", type=int, default=18040)
    parser.add_argument(
        "--shared-cpus",
        action="store_true",
        help="let the service, wrk and the subscribers share every CPU (default: the service on "
        "CPU 0, all load on the others, so that the figure is what the service itself loses)",
    )
    args = parser.parse_args()
    service_cpus = None
    if not args.shared_cpus and len(os.sched_getaffinity(0)) > 1:
        service_cpus = "0"
        os.sched_setaffinity(0, os.sched_getaffinity(0) - {0})  # wrk and the subscribers inherit this
    rng = random.Random(9)
    bodies = [json.dumps({"metrics": batch(time.time(), rng=rng, spread_s=120)}).encode() for _ in range(32)]
    with rtanalytics_server(
        args.port, env={"RTA_MAX_SUBSCRIPTIONS": str(10 * args.subscribers)}, cpus=service_cpus
    ) as base:
        with httpx.Client() as client:  # warm-up: every series exists before anything is timed
            for body in bodies:
                client.post(
                    f"{base}/api/v1/metrics", content=body, headers={"Content-Type": "application/json"}
                )
        with body_dir(bodies) as folder:
            # Rounds of (alone, with subscribers), back to back: the machine is shared, and a
            # single pair of runs minutes apart measured the neighbours as much as the service.
            losses, alone_rates, loaded_rates = [], [], []
            latencies: list[float] = []
            for _ in range(args.rounds):
                alone = wrk(
                    f"{base}/api/v1/metrics", folder, len(bodies), "application/json", args.seconds, 8
                )
                ws_url = base.replace("http://", "ws://")
                out: multiprocessing.Queue = multiprocessing.Queue()  # type: ignore[type-arg]
                proc = multiprocessing.Process(
                    target=run_subscribers, args=(ws_url, args.subscribers, args.seconds + 15, out)
                )
                proc.start()
                assert out.get(timeout=120)[0] == "ready"

                async def loaded() -> tuple[dict[float, float], dict[str, float]]:
                    load = asyncio.to_thread(
                        wrk,
                        f"{base}/api/v1/metrics",
                        folder,
                        len(bodies),
                        "application/json",
                        args.seconds,
                        8,
                    )
                    sent, result = await asyncio.gather(markers(base, args.seconds), load)
                    return sent, result

                sent, with_subs = asyncio.run(loaded())
                _, received = out.get(timeout=120)
                proc.join(timeout=60)
                latencies += [
                    (at - sent[value]) * 1000 for value, at in received if value in sent and at >= sent[value]
                ]
                alone_rates.append(alone["rps"] * 1000)
                loaded_rates.append(with_subs["rps"] * 1000)
                losses.append(1 - with_subs["rps"] / alone["rps"])
                print(
                    f"  round: alone {alone_rates[-1]:,.0f} points/s, with {args.subscribers} subscribers "
                    f"{loaded_rates[-1]:,.0f} (lost {losses[-1]:.0%})"
                )
    latencies.sort()
    print(
        f"ingest alone: median {statistics.median(alone_rates):,.0f} points/s; with {args.subscribers} subscribers: "
        f"median {statistics.median(loaded_rates):,.0f} points/s; lost: median {statistics.median(losses):.0%} "
        f"over {args.rounds} rounds (target <= 10%)"
    )
    if latencies:
        p99 = latencies[max(0, int(len(latencies) * 0.99) - 1)]
        print(
            f"ingest response -> subscriber receipt: p50 {statistics.median(latencies):.0f} ms, p99 {p99:.0f} ms "
            f"over {len(latencies):,} deliveries (target p99 <= 250 ms)"
        )
    if args.idle:
        idle(args)


def idle(args: argparse.Namespace) -> None:
    """Open many idle connections (each with one subscription) and measure the service's memory."""
    import subprocess

    with rtanalytics_server(args.port + 1, env={"RTA_MAX_SUBSCRIPTIONS": str(10 * args.idle)}) as base:
        pid = int(
            subprocess.run(
                ["pgrep", "-f", f"serve --port {args.port + 1}"], capture_output=True, text=True
            ).stdout.split()[0]
        )
        before = rss_kib(pid)

        async def hold() -> int:
            url = base.replace("http://", "ws://")
            conns = []
            for i in range(args.idle):
                try:
                    ws = await websockets.connect(f"{url}/ws/metrics/idle{i}")
                    await ws.send(
                        json.dumps({"type": "subscribe", "metrics": ["idle.metric"], "interval_ms": 1000})
                    )
                    conns.append(ws)
                except OSError:
                    break
            await asyncio.sleep(2)
            held = len(conns)
            after = rss_kib(pid)
            print(
                f"idle connections held: {held:,}; service memory {before / 1024:,.0f} -> {after / 1024:,.0f} MiB "
                f"= {(after - before) * 1024 / max(held, 1):,.0f} bytes per connection"
            )
            for ws in conns:
                await ws.close()
            return held

        asyncio.run(hold())


if __name__ == "__main__":
    main()
