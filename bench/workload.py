"""The benchmark workload of issue 2: 1,000-point batches in the seed's JSON format over ~12,000
series (50 names x endpoint/method/status tags), log-normal values, timestamps in the last 5 min."""

from __future__ import annotations

import random
from typing import Any

TYPES = ["count", "sum", "average", "min", "max", "percentile", "rate"]
NAMES = [
    (f"svc{i // 10}.{['requests', 'latency', 'bytes', 'errors', 'queue'][i % 5]}.m{i}", TYPES[i % len(TYPES)])
    for i in range(50)
]
ENDPOINTS = [f"/api/v1/r{i}" for i in range(20)]
METHODS = ["GET", "POST", "PUT", "DELETE"]
STATUSES = ["200", "404", "500"]
SERIES = len(NAMES) * len(ENDPOINTS) * len(METHODS) * len(STATUSES)  # 12,000


def batch(
    now: float, size: int = 1_000, rng: random.Random | None = None, spread_s: float = 300.0
) -> list[dict[str, Any]]:
    rng = rng or random.Random()
    out = []
    for _ in range(size):
        name, mtype = NAMES[rng.randrange(len(NAMES))]
        out.append(
            {
                "name": name,
                "type": mtype,
                "value": round(rng.lognormvariate(3.0, 1.0), 3),
                "tags": {
                    "endpoint": ENDPOINTS[rng.randrange(len(ENDPOINTS))],
                    "method": METHODS[rng.randrange(len(METHODS))],
                    "status": STATUSES[rng.randrange(len(STATUSES))],
                },
                "timestamp": round(now - rng.random() * spread_s, 3),
            }
        )
    return out


def line_protocol(points: list[dict[str, Any]]) -> str:
    """The same points as Influx line protocol, for VictoriaMetrics and InfluxDB."""
    lines = []
    for p in points:
        tags = ",".join(f"{k}={v}" for k, v in sorted(p["tags"].items()))
        lines.append(f"{p['name']},{tags} value={p['value']} {int(p['timestamp'] * 1e9)}")
    return "\n".join(lines) + "\n"


def every_series(now: float, size: int = 1_000) -> list[list[dict[str, Any]]]:
    """One point of every series of the workload, in batches of `size` (a warm-up that leaves
    no series for the measured batches to create)."""
    points = [
        {
            "name": name,
            "type": mtype,
            "value": 1.0,
            "tags": {"endpoint": endpoint, "method": method, "status": status},
            "timestamp": round(now - 1.0, 3),
        }
        for name, mtype in NAMES
        for endpoint in ENDPOINTS
        for method in METHODS
        for status in STATUSES
    ]
    return [points[i : i + size] for i in range(0, len(points), size)]
