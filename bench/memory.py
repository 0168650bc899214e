"""Memory per active series after an hour of simulated load on a manual clock.

One 1,000-point batch of the workload per simulated second for an hour (3.6 M points over
~12,000 series), then: the store's array bytes per series, and the process's RSS growth per
series (which also counts sketches and indexes). A second hour shows whether memory stays flat.

    .venv/bin/python bench/memory.py [--seconds 3600]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import batch

from rtanalytics import Engine
from rtanalytics.adapters.clock import ManualClock


def rss_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * 4096


async def simulate(engine: Engine, clock: ManualClock, seconds: int, rng: random.Random) -> None:
    for _ in range(seconds):
        clock.advance(1.0)
        await engine.ingest(batch(clock.now(), rng=rng, spread_s=5.0))
        if int(clock.now()) % 60 == 0:
            await engine.tick()


async def main(seconds: int) -> None:
    rng = random.Random(11)
    clock = ManualClock(time.time())
    engine = Engine(clock=clock)
    before = rss_bytes()
    started = time.perf_counter()
    await simulate(engine, clock, seconds, rng)
    series = (await engine.store.stats()).series_by_tenant["default"]
    arrays = engine.store.nbytes()
    grown = rss_bytes() - before
    print(
        f"after {seconds}s simulated ({seconds * 1000:,} points, {time.perf_counter() - started:.0f}s wall): "
        f"{series:,} active series"
    )
    print(f"  ring arrays: {arrays / series:,.0f} bytes/series ({arrays / 2**20:,.0f} MiB)")
    print(f"  process RSS growth: {grown / series:,.0f} bytes/series ({grown / 2**20:,.0f} MiB)")
    await simulate(engine, clock, seconds, rng)
    print(
        f"after another {seconds}s: RSS growth {(rss_bytes() - before) / 2**20:,.0f} MiB "
        f"(flat means eviction by time keeps up)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=3600)
    asyncio.run(main(parser.parse_args().seconds))
