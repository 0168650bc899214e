"""In-process ingest: `Engine.ingest` of the workload's 1,000-point batches (lists of dicts).

.venv/bin/python bench/ingest_engine.py [--batches 200] [--rounds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import SERIES, batch, every_series

from rtanalytics import Engine
from rtanalytics.adapters.clock import ManualClock


async def main(batches: int, rounds: int) -> None:
    now = time.time()
    clock = ManualClock(now)
    engine = Engine(clock=clock)
    rng = random.Random(1)
    # Warm-up: every series exists (a new series' first rows cost ~1 ms to map and clear, see
    # docs/benchmarks.md), and the rings have their final size.
    for points in every_series(now):
        await engine.ingest(points)
    for _ in range(60):
        await engine.ingest(batch(now, rng=rng))
    series = (await engine.store.stats()).series_by_tenant["default"]
    rates = []
    for _ in range(rounds):  # this machine is shared: several rounds, median and best
        data = [batch(now, rng=rng) for _ in range(batches)]
        started = time.perf_counter()
        accepted = 0
        for points in data:
            accepted += (await engine.ingest(points)).accepted
        rates.append(accepted / (time.perf_counter() - started))
    print("rounds:", ", ".join(f"{r:,.0f}" for r in rates))
    rates.sort()
    print(
        f"engine.ingest: median {rates[len(rates) // 2]:,.0f} points/s, best {rates[-1]:,.0f} "
        f"({rounds} rounds of {batches} batches of 1,000 over {series:,} series of {SERIES:,})"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.rounds))
