"""Query latency over HTTP after an ingest load: current value, group_by over 1,000 series with a
5-minute trailing window, and a 12-hour series at 5-minute windows. Prints p50 and p99.

    .venv/bin/python bench/query_http.py [--requests 500]
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import rtanalytics_server
from workload import NAMES, batch

TARGETS = {"current value": 1.0, "group_by 1,000 series, 5m": 5.0, "12h series at 5m": 10.0}


def request(
    conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None
) -> tuple[int, bytes]:
    data = json.dumps(body).encode() if body is not None else None
    conn.request(method, path, body=data, headers={"Content-Type": "application/json"} if data else {})
    response = conn.getresponse()
    return response.status, response.read()


def load(conn: http.client.HTTPConnection, now: float) -> None:
    rng = random.Random(5)
    for k in range(300):  # 12 hours of history, then the last 5 minutes
        spread = 43_200 if k < 200 else 240
        status, _ = request(
            conn, "POST", "/api/v1/metrics", {"metrics": batch(now, rng=rng, spread_s=spread)}
        )
        assert status == 202
    hosts = [
        {
            "name": "bench.hosts.cpu",
            "type": "average",
            "value": rng.random() * 100,
            "tags": {"host": f"h{i:04d}"},
            "timestamp": now - rng.random() * 240,
        }
        for i in range(1_000)
        for _ in range(3)
    ]
    for start in range(0, len(hosts), 1_000):
        assert request(conn, "POST", "/api/v1/metrics", {"metrics": hosts[start : start + 1_000]})[0] == 202


def measure(
    conn: http.client.HTTPConnection, n: int, method: str, path: str, body: dict | None = None
) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        status, payload = request(conn, method, path, body)
        out.append((time.perf_counter() - started) * 1000)
        assert status == 200, payload[:300]
    return out


Case = tuple[str, str, "dict | None"]


def cases(now: float) -> dict[str, Case]:
    """The issue's three queries, against what `load` wrote at `now`."""
    metric = NAMES[0][0]
    return {
        "current value": ("GET", f"/api/v1/metrics/{metric}/current", None),
        "group_by 1,000 series, 5m": (
            "POST",
            "/api/v1/query",
            {"metrics": ["bench.hosts.cpu"], "window": "5m", "aggregation": "avg", "group_by": ["host"]},
        ),
        "12h series at 5m": (
            "POST",
            "/api/v1/query",
            {
                "metrics": [metric],
                "window": "5m",
                "aggregation": "sum",
                "start_time": now - 43_200,
                "end_time": now,
            },
        ),
    }


def latency(
    conn: http.client.HTTPConnection, case: Case, requests: int, warm: int = 20
) -> tuple[float, float]:
    """p50 and p99 in ms of `requests` requests, after `warm` unmeasured ones."""
    measure(conn, warm, *case)
    times = sorted(measure(conn, requests, *case))
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--port", type=int, default=18010)
    args = parser.parse_args()
    with rtanalytics_server(args.port):
        conn = http.client.HTTPConnection("127.0.0.1", args.port)
        now = time.time()
        load(conn, now)
        for label, case in cases(now).items():
            p50, p99 = latency(conn, case, args.requests)
            print(f"{label:28s} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms   (target p50 <= {TARGETS[label]} ms)")


if __name__ == "__main__":
    main()
