"""A real Prometheus server scrapes the service and answers with the values ingested."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from tests.integration.servers import ROOT
from tests.unit.receivers import free_port

pytestmark = pytest.mark.integration


def wait(url: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer within {timeout}s")


def test_prometheus_scrapes_the_export(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is missing: install Debian's `prometheus` package (scripts/test does)")
    service_port, prometheus_port = free_port(), free_port()
    service = subprocess.Popen(
        [str(ROOT / ".venv" / "bin" / "rtanalytics"), "serve", "--port", str(service_port)],
        env={**os.environ, "LOG_LEVEL": "WARNING"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
        "scrape_configs:\n  - job_name: rtanalytics\n    metrics_path: /api/v1/export/prometheus\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{service_port}']\n"
    )
    prometheus = None
    try:
        base = f"http://127.0.0.1:{service_port}"
        wait(f"{base}/health")
        points = [
            {"name": "api.requests.count", "type": "count", "value": 3, "tags": {"endpoint": "/a"}},
            {"name": "system.cpu.usage", "type": "average", "value": 41.5, "window": "5m"},
            *({"name": "api.response.time", "type": "percentile", "value": v} for v in range(1, 101)),
        ]
        assert httpx.post(f"{base}/api/v1/metrics", json={"metrics": points}).status_code == 202
        prometheus = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={tmp_path / 'data'}",
                f"--web.listen-address=127.0.0.1:{prometheus_port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        api = f"http://127.0.0.1:{prometheus_port}/api/v1"
        wait(f"{api}/status/buildinfo")
        expected = {
            'api_requests_count_total{endpoint="/a"}': 3.0,
            "system_cpu_usage": 41.5,
            "api_response_time_count": 100.0,
        }
        deadline = time.monotonic() + 60
        found: dict[str, float] = {}
        while time.monotonic() < deadline and found != expected:
            for query in expected:
                result = httpx.get(f"{api}/query", params={"query": query}).json()["data"]["result"]
                if result:
                    found[query] = float(result[0]["value"][1])
            time.sleep(0.5)
        assert found == expected
        targets = httpx.get(f"{api}/targets").json()["data"]["activeTargets"]
        assert [t["health"] for t in targets] == ["up"] and targets[0]["lastError"] == ""
        p99 = httpx.get(f"{api}/query", params={"query": 'api_response_time{quantile="0.99"}'}).json()
        assert abs(float(p99["data"]["result"][0]["value"][1]) - 99) <= 0.99
    finally:
        for process in (prometheus, service):
            if process is not None:
                process.terminate()
                process.wait(timeout=30)
