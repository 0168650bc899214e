"""HTTP ingest into `rtanalytics serve`, load from wrk in a separate process, beside
VictoriaMetrics (Debian's `victoria-metrics`) taking the same points as Influx line protocol.

    .venv/bin/python bench/ingest_http.py [--seconds 10] [--rounds 3] [--connections 8] [--no-victoria] [--pin]

--pin: the service (one process, one busy thread) on CPU 0 and wrk on the other, as
bench/websocket.py does. Unpinned, the two share both cores as the scheduler likes; pinned runs
gave ~5 % more and moved less (2026-11-28: 626,000-645,000 against 587,000-601,000).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import body_dir, cpu_seconds, rtanalytics_server, server_pid, wait_http, wrk
from workload import SERIES, batch, line_protocol

BODIES = 64


def post(url: str, body: bytes, content_type: str) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": content_type}, method="POST")
    with urllib.request.urlopen(request) as response:
        return response.status


def bench_rtanalytics(args: argparse.Namespace, batches: list[list[dict]]) -> float:
    bodies = [json.dumps({"metrics": b}).encode() for b in batches]
    with rtanalytics_server(args.port, cpus="0" if args.pin else None) as base:
        for body in bodies:  # warm-up: every series exists before the timed run
            assert post(f"{base}/api/v1/metrics", body, "application/json") == 202
        pid = server_pid(args.port)
        rates, cpu_per_point = [], []
        with body_dir(bodies) as folder:
            for _ in range(args.rounds):  # the machine is shared: several runs, median and best
                cpu_before = cpu_seconds(pid)
                result = wrk(
                    f"{base}/api/v1/metrics",
                    folder,
                    len(bodies),
                    "application/json",
                    args.seconds,
                    args.connections,
                )
                cpu = cpu_seconds(pid) - cpu_before
                if result["non2xx"] or result["socket_errors"]:
                    print(result["raw"])
                rates.append(result["rps"] * 1_000)
                cpu_per_point.append(cpu / (rates[-1] * args.seconds) * 1e6)
        with urllib.request.urlopen(f"{base}/api/v1/health") as response:
            health = json.loads(response.read())
    points = statistics.median(rates)
    print(
        f"rtanalytics HTTP ingest: median {points:,.0f} points/s, best {max(rates):,.0f} over {args.rounds} runs "
        f"of {args.seconds}s ({args.connections} connections; series {health['series'].get('default')}); "
        f"service CPU {statistics.median(cpu_per_point):.2f} us per point "
        f"(= {1e6 / statistics.median(cpu_per_point):,.0f} points/s per busy core)"
    )
    return points


def bench_victoria(args: argparse.Namespace, batches: list[list[dict]]) -> float | None:
    binary = shutil.which("victoria-metrics")
    if binary is None:
        print("victoria-metrics is not installed (apt-get install victoria-metrics); skipped")
        return None
    bodies = [line_protocol(b).encode() for b in batches]
    with tempfile.TemporaryDirectory(prefix="rta-vm-") as data:
        proc = subprocess.Popen(
            [
                binary,
                f"-httpListenAddr=127.0.0.1:{args.port + 1}",
                f"-storageDataPath={data}",
                "-loggerLevel=ERROR",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            base = f"http://127.0.0.1:{args.port + 1}"
            wait_http(f"{base}/health")
            for body in bodies:
                post(f"{base}/write", body, "text/plain")
            with body_dir(bodies) as folder:
                result = wrk(
                    f"{base}/write", folder, len(bodies), "text/plain", args.seconds, args.connections
                )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    points = result["rps"] * 1_000
    print(
        f"VictoriaMetrics /write (line protocol): {result['rps']:,.0f} req/s x 1,000 = {points:,.0f} points/s"
    )
    return points


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--port", type=int, default=18000)
    parser.add_argument("--no-victoria", action="store_true")
    parser.add_argument(
        "--pin",
        action="store_true",
        help="rtanalytics on CPU 0 and its wrk on the others (VictoriaMetrics and its wrk stay unpinned: it uses every core)",
    )
    args = parser.parse_args()
    every_cpu = os.sched_getaffinity(0)
    if args.pin and len(every_cpu) > 1:
        os.sched_setaffinity(0, every_cpu - {0})  # wrk inherits this
    rng = random.Random(3)
    now = time.time()
    # 64 distinct bodies cycled by wrk; timestamps stay within ~5 min of now for a short run
    batches = [batch(now, rng=rng, spread_s=240) for _ in range(BODIES)]
    ours = bench_rtanalytics(args, batches)
    os.sched_setaffinity(0, every_cpu)
    if not args.no_victoria:
        theirs = bench_victoria(args, batches)
        if theirs:
            print(
                f"ratio rtanalytics / VictoriaMetrics: {ours / theirs:.2f} (target for rtanalytics: >= 500,000 points/s)"
            )
    print(f"workload: 1,000-point batches over {SERIES:,} series")


if __name__ == "__main__":
    main()
