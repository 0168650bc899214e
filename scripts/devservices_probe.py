"""Readiness probes for scripts/devservices: exit 0 when the server really answers.

python scripts/devservices_probe.py ignite 127.0.0.1 10800
python scripts/devservices_probe.py pulsar pulsar://127.0.0.1:6650 http://127.0.0.1:8080
python scripts/devservices_probe.py cassandra 127.0.0.1 9042
"""

from __future__ import annotations

import sys
import urllib.request
import uuid


def ignite(host: str, port: str) -> None:
    from pyignite import Client

    client = Client(timeout=5.0)
    with client.connect(host, int(port)):
        cache = client.get_or_create_cache("devservices_probe")
        cache.put(1, "ok")
        assert cache.get(1) == "ok"


def pulsar(url: str, admin: str) -> None:
    with urllib.request.urlopen(f"{admin}/admin/v2/clusters", timeout=5) as response:
        assert response.status == 200, response.status
    import pulsar as pulsar_client

    client = pulsar_client.Client(
        url, operation_timeout_seconds=10, logger=pulsar_client.ConsoleLogger(pulsar_client.LoggerLevel.Error)
    )
    try:
        topic = f"persistent://public/default/devservices-probe-{uuid.uuid4().hex[:8]}"
        consumer = client.subscribe(topic, "probe")
        producer = client.create_producer(topic)
        producer.send(b"ping")
        message = consumer.receive(timeout_millis=10_000)
        consumer.acknowledge(message)
        assert message.data() == b"ping"
    finally:
        client.close()


def cassandra(host: str, port: str) -> None:
    from cassandra.cluster import Cluster

    cluster = Cluster([host], port=int(port), connect_timeout=5)
    try:
        session = cluster.connect()
        row = session.execute("SELECT release_version FROM system.local").one()
        print(row.release_version, file=sys.stderr)
    finally:
        cluster.shutdown()


if __name__ == "__main__":
    kind, *args = sys.argv[1:]
    try:
        {"ignite": ignite, "pulsar": pulsar, "cassandra": cassandra}[kind](*args)
    except Exception as exc:  # the launcher only needs "not yet"; the reason goes to stderr
        print(f"{kind} not ready: {type(exc).__name__}: {exc}", file=sys.stderr)
        sys.exit(1)
