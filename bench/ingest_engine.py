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
    took: list[float] = []  # each batch's time, every round
    for _ in range(rounds):  # this machine is shared: several rounds, median and best
        data = [batch(now, rng=rng) for _ in range(batches)]
        accepted = 0
        clock_ns = time.perf_counter_ns
        started = at = clock_ns()
        for points in data:
            accepted += (await engine.ingest(points)).accepted
            took.append(clock_ns() - at)
            at = clock_ns()
        engine.store.settle()  # the folds still queued on the worker thread count too
        at = clock_ns()
        rates.append(accepted / ((at - started) / 1e9))
    print("rounds:", ", ".join(f"{r:,.0f}" for r in rates))
    rates.sort()
    print(
        f"engine.ingest: median {rates[len(rates) // 2]:,.0f} points/s, best {rates[-1]:,.0f} "
        f"({rounds} rounds of {batches} batches of 1,000 over {series:,} series of {SERIES:,})"
    )
    # A round's rate includes the few batches that stalled: on this VM a thread now and then
    # does not run for 4-100 ms (no page fault, context switch or system time: the host did not
    # run the vCPU; the fold worker's stalls now wait in its queue), and a full garbage
    # collection (76 ms) may fall in a round (docs/benchmarks.md, "2026-12-03, fourth session").
    # The median batch shows what a batch costs when neither happens; the slowest 1 % show how
    # much they weigh.
    took.sort()
    median_us = took[len(took) // 2] / 1e3
    slow = took[int(len(took) * 0.99) :]
    print(
        f"batches: median {median_us:,.0f} us ({1e9 / took[len(took) // 2] * 1_000:,.0f} points/s at that pace), "
        f"p99 {took[int(len(took) * 0.99)] / 1e3:,.0f} us, max {took[-1] / 1e3:,.0f} us; "
        f"the slowest 1 % took {sum(slow) / sum(took):.0%} of the time"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    asyncio.run(main(args.batches, args.rounds))
