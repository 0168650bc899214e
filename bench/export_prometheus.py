"""Prometheus export at high cardinality: 100,000 series, streamed over HTTP.

.venv/bin/python bench/export_prometheus.py [--series 100000] [--types count,sum]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import rtanalytics_server


def load(client: httpx.Client, series: int, kinds: list[str]) -> None:
    for start in range(0, series, 1_000):
        points = [
            {
                "name": f"bench.export.{kinds[i % len(kinds)]}",
                "type": kinds[i % len(kinds)],
                "value": float(i % 97),
                "tags": {"host": f"h{i // 40}", "shard": str(i % 40)},
            }
            for i in range(start, min(start + 1_000, series))
        ]
        response = client.post("/api/v1/metrics", json={"metrics": points})
        if response.status_code != 202 or response.json()["rejected"]:
            print(f"the service refused series from {start:,} on: {response.json()['rejected'][0]['error']}")
            return


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--port", type=int, default=18030)
    parser.add_argument("--types", default="count,average,percentile,max", help="metric types, round robin")
    args = parser.parse_args()
    server = rtanalytics_server(args.port, env={"RTA_MAX_SERIES": str(args.series * 2)})
    with server as base, httpx.Client(base_url=base, timeout=120) as client:
        load(client, args.series, args.types.split(","))
        held = client.get("/api/v1/health").json()["series"].get("default", 0)
        for _ in range(3):
            started = time.perf_counter()
            size = 0
            first = 0.0
            with client.stream("GET", "/api/v1/export/prometheus") as response:
                for chunk in response.iter_bytes():
                    if not size:
                        first = time.perf_counter() - started
                    size += len(chunk)
            took = time.perf_counter() - started
            print(
                f"export of {held:,} series ({args.types}): {took:.2f}s, {size / 2**20:.1f} MiB, "
                f"first byte after {first * 1000:.0f} ms (target < 1 s for 100,000)"
            )


if __name__ == "__main__":
    main()
