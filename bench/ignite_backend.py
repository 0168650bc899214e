"""`--backend ignite` against `--backend memory` in the same run: HTTP ingest with wrk (one and two
service processes on one Ignite) and query latency (current value, group_by over 1,000 series,
a 12-hour series). Needs a running Ignite (`eval "$(scripts/devservices up ignite)"`).

    .venv/bin/python bench/ignite_backend.py [--seconds 15] [--connections 8] [--requests 300]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import sys
import threading
import time
import urllib.request
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common import body_dir, rtanalytics_server, wrk
from ingest_http import post
from query_http import cases, latency, load, measure
from workload import batch

from tests.contract.conftest import clear_ignite

IGNITE = {
    "IGNITE_HOST": os.environ.get("IGNITE_HOST", "127.0.0.1"),
    "IGNITE_PORT": os.environ.get("IGNITE_PORT", "10800"),
}


def health(base: str) -> dict:
    with urllib.request.urlopen(f"{base}/api/v1/health") as response:
        return json.loads(response.read())


def ingest(args: argparse.Namespace, backend: str, processes: int, bodies: list[bytes]) -> float:
    if backend == "ignite":
        clear_ignite(IGNITE)
    with ExitStack() as stack:
        bases = [
            stack.enter_context(
                rtanalytics_server(
                    args.port + k, "--backend", backend, env={**IGNITE, "RTA_WRITER_ID": f"bench-{k}"}
                )
            )
            for k in range(processes)
        ]
        for k, body in enumerate(bodies):  # warm-up: every series exists before the timed run
            assert post(f"{bases[k % processes]}/api/v1/metrics", body, "application/json") == 202
        results: list[dict] = [{}] * processes
        with body_dir(bodies) as folder:

            def run(k: int) -> None:
                results[k] = wrk(
                    f"{bases[k]}/api/v1/metrics",
                    folder,
                    len(bodies),
                    "application/json",
                    args.seconds,
                    max(1, args.connections // processes),
                )

            threads = [threading.Thread(target=run, args=(k,)) for k in range(processes)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        rps = sum(r["rps"] for r in results)
        bad = sum(r["non2xx"] for r in results)
        time.sleep(2)  # the last flush
        extra = ""
        if backend == "ignite":
            h = health(bases[0])["backends"]["ignite"]
            extra = f"; after 2 s: buffered {h['buffered_points']}, last flush {h['last_flush_ms']} ms"
    points = rps * 1_000
    print(f"ingest {backend:6s} x{processes}: {points:12,.0f} points/s (non-2xx {bad:.0f}{extra})")
    return points


def queries(args: argparse.Namespace, backend: str) -> dict[str, float]:
    if backend == "ignite":
        clear_ignite(IGNITE)
    out = {}
    with rtanalytics_server(args.port, "--backend", backend, env={**IGNITE, "RTA_WRITER_ID": "bench-q"}):
        conn = http.client.HTTPConnection("127.0.0.1", args.port)
        now = time.time()
        load(conn, now)
        time.sleep(1.5)  # flushed: reads come from Ignite, not this process's buffer
        for label, case in cases(now).items():
            p50, p99 = latency(conn, case, args.requests)
            out[label] = p50
            print(f"query  {backend:6s} {label:28s} p50 {p50:7.3f} ms   p99 {p99:7.3f} ms")
        if backend == "ignite":  # a second instance reads the first one's blocks from Ignite
            env = {**IGNITE, "RTA_WRITER_ID": "bench-q2"}
            with rtanalytics_server(args.port + 1, "--backend", "ignite", env=env):
                other = http.client.HTTPConnection("127.0.0.1", args.port + 1)
                for label, case in cases(now).items():
                    first = measure(other, 1, *case)[0]
                    p50, p99 = latency(other, case, args.requests, warm=0)
                    print(
                        f"query  ignite, other instance {label:28s} first {first:7.3f} ms, "
                        f"then p50 {p50:7.3f} ms   p99 {p99:7.3f} ms"
                    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--port", type=int, default=18100)
    parser.add_argument("--skip-ingest", action="store_true")
    parser.add_argument("--skip-queries", action="store_true")
    args = parser.parse_args()
    rng = random.Random(3)
    now = time.time()
    bodies = [json.dumps({"metrics": batch(now, rng=rng, spread_s=240)}).encode() for _ in range(64)]
    if not args.skip_ingest:
        memory = ingest(args, "memory", 1, bodies)
        one = ingest(args, "ignite", 1, bodies)
        two = ingest(args, "ignite", 2, bodies)
        print(
            f"ignite / memory: one process {one / memory:.2f}, two processes {two / memory:.2f} (target >= 0.50)"
        )
    if not args.skip_queries:
        mem = queries(args, "memory")
        ign = queries(args, "ignite")
        for label in mem:
            print(f"{label:28s} ignite p50 {ign[label]:.3f} ms vs memory {mem[label]:.3f} ms")
        print("target: current value p50 <= 2 ms on ignite")


if __name__ == "__main__":
    main()
