"""A/B of the C extensions in one process: this build's against a baseline checkout's.

    .venv/bin/python bench/ab_native.py --baseline DIR [--rounds 40] [--json] [--loads]

DIR is another checkout with its extensions built (`git worktree add /tmp/prev <commit>`, then
`.venv/bin/python setup.py build_ext --inplace` there). Engine A runs on DIR's `_kernel` and
`_speedups`, engine B on this build's; the Python code is this checkout's for both, so the
baseline's extensions must take the same arguments. Rounds of 50 batches of the workload
alternate between the engines (A then B, then B then A), so that this shared machine's swings,
which move one build's runs by up to ~40 %, fall on both alike. Printed: each engine's median,
and the median ratio B/A over paired rounds with how many B won.

--json: `Engine.ingest_json` of the same points as request bodies. --loads: dicts made by
json.loads (every string a new object) instead of the workload's own.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import random
import statistics
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from workload import batch, every_series

import rtanalytics.adapters.memory.metric_store as store_b
import rtanalytics.core.metrics as metrics
from rtanalytics import Engine
from rtanalytics.adapters.clock import ManualClock


def load(name: str, path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def baseline(folder: Path) -> tuple[ModuleType, ModuleType, ModuleType]:
    """The baseline's extensions, and a second copy of the memory store module using its kernel."""
    kernel = load("baseline._kernel", next((folder / "rtanalytics/adapters/memory").glob("_kernel*.so")))
    speedups = load("baseline._speedups", next((folder / "rtanalytics/core").glob("_speedups*.so")))
    store_a = load("rtanalytics.adapters.memory.baseline_store", Path(store_b.__file__))
    store_a._kernel = kernel  # type: ignore[attr-defined]
    return kernel, speedups, store_a


async def main(args: argparse.Namespace) -> None:
    _, speedups_a, store_a = baseline(Path(args.baseline))
    dict_table = getattr(speedups_a, "dict_series_table", speedups_a.series_table)
    native = {
        "A": (speedups_a, dict_table(), speedups_a.series_table()),
        "B": (metrics._speedups, metrics._DICT_TABLE, metrics._SERIES_TABLE),
    }
    now = time.time()
    engines = {
        "A": Engine(clock=ManualClock(now), store=store_a.MemoryMetricStore()),
        "B": Engine(clock=ManualClock(now), store=store_b.MemoryMetricStore()),
    }
    rng = random.Random(1)
    # every series exists (as in bench/ingest_engine.py), the rings are grown
    warm = every_series(now) + [batch(now, rng=rng) for _ in range(60)]
    for name, engine in engines.items():
        metrics._speedups, metrics._DICT_TABLE, metrics._SERIES_TABLE = native[name]
        for points in warm:
            if args.json:  # the JSON parser's table learns the series too
                await engine.ingest_json(json.dumps({"metrics": points}).encode())
            else:
                await engine.ingest(points)
    rates: dict[str, list[float]] = {"A": [], "B": []}
    for r in range(args.rounds):
        data: list[Any] = [batch(now, rng=rng) for _ in range(50)]
        if args.json:
            data = [json.dumps({"metrics": points}).encode() for points in data]
        elif args.loads:
            data = [json.loads(json.dumps(points)) for points in data]
        for name in ("A", "B") if r % 2 == 0 else ("B", "A"):
            engine = engines[name]
            metrics._speedups, metrics._DICT_TABLE, metrics._SERIES_TABLE = native[name]
            started = time.perf_counter()
            for item in data:
                await (engine.ingest_json(item) if args.json else engine.ingest(item))
            rates[name].append(50_000 / (time.perf_counter() - started))
    for name, label in (("A", "baseline"), ("B", "this build")):
        print(f"{label}: median {statistics.median(rates[name]):,.0f} points/s, best {max(rates[name]):,.0f}")
    ratios = [b / a for a, b in zip(rates["A"], rates["B"], strict=True)]
    wins = sum(ratio > 1 for ratio in ratios)
    print(
        f"this build / baseline: median ratio {statistics.median(ratios):.3f}, faster in {wins} of {args.rounds} paired rounds"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--baseline", required=True, help="a checkout with its C extensions built")
    parser.add_argument("--rounds", type=int, default=40)
    parser.add_argument("--json", action="store_true", help="Engine.ingest_json of request bodies")
    parser.add_argument("--loads", action="store_true", help="dicts from json.loads (fresh strings)")
    asyncio.run(main(parser.parse_args()))
