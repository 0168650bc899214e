"""Each real server answers through the Python client the project uses."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta

import pytest

pytestmark = pytest.mark.integration


def test_ignite_put_get_expiry_and_sql(ignite_server) -> None:
    from pyignite import Client
    from pyignite.datatypes.expiry_policy import ExpiryPolicy

    client = Client(timeout=10.0)
    with client.connect(ignite_server.env["IGNITE_HOST"], int(ignite_server.env["IGNITE_PORT"])):
        name = f"smoke_{uuid.uuid4().hex[:8]}"
        cache = client.get_or_create_cache(name)
        try:
            cache.put("kept", 1)
            short = cache.with_expire_policy(expiry_policy=ExpiryPolicy(create=timedelta(milliseconds=500)))
            short.put("fleeting", 2)
            assert cache.get("kept") == 1 and cache.get("fleeting") == 2
            deadline = time.monotonic() + 10
            while cache.get("fleeting") is not None and time.monotonic() < deadline:
                time.sleep(0.2)
            assert cache.get("fleeting") is None and cache.get("kept") == 1
        finally:
            cache.destroy()
        table = f"SMOKE_{uuid.uuid4().hex[:8].upper()}"
        client.sql(f"CREATE TABLE {table} (id INT PRIMARY KEY, metric VARCHAR, v DOUBLE)")
        try:
            for i in range(5):
                client.sql(
                    f"INSERT INTO {table} (id, metric, v) VALUES (?, ?, ?)", query_args=[i, "m", float(i)]
                )
            rows = list(client.sql(f"SELECT metric, SUM(v), COUNT(*) FROM {table} GROUP BY metric"))
            assert rows == [["m", 10.0, 5]]
        finally:
            client.sql(f"DROP TABLE {table}")


def test_pulsar_key_shared_acks_and_negative_ack_redelivery(pulsar_server) -> None:
    import pulsar

    client = pulsar.Client(pulsar_server.env["PULSAR_URL"], operation_timeout_seconds=30)
    try:
        topic = f"persistent://public/default/smoke-{uuid.uuid4().hex[:8]}"
        consumer = client.subscribe(
            topic,
            "smoke",
            consumer_type=pulsar.ConsumerType.KeyShared,
            negative_ack_redelivery_delay_ms=200,
        )
        producer = client.create_producer(topic)
        for i in range(3):
            producer.send(f"m{i}".encode(), partition_key=f"series-{i % 2}")
        first = consumer.receive(timeout_millis=10_000)
        consumer.negative_acknowledge(first)
        seen = []
        deadline = time.monotonic() + 20
        while len(seen) < 3 and time.monotonic() < deadline:
            message = consumer.receive(timeout_millis=10_000)
            seen.append(message.data())
            consumer.acknowledge(message)
        assert sorted(seen) == [b"m0", b"m1", b"m2"]
        assert first.data() in seen  # the negatively acknowledged message came back
        assert first.partition_key().startswith("series-")
    finally:
        client.close()


def test_cassandra_keyspace_prepared_insert_with_ttl_and_select(cassandra_server) -> None:
    from cassandra.cluster import Cluster

    hosts = cassandra_server.env["CASSANDRA_HOSTS"].split(",")
    port = int(cassandra_server.env.get("CASSANDRA_PORT", "9042"))
    cluster = Cluster(hosts, port=port)
    try:
        session = cluster.connect()
        keyspace = f"smoke_{uuid.uuid4().hex[:8]}"
        session.execute(
            f"CREATE KEYSPACE {keyspace} WITH replication = {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
        )
        try:
            session.set_keyspace(keyspace)
            session.execute(
                "CREATE TABLE buckets (metric text, start bigint, total double, PRIMARY KEY (metric, start))"
            )
            insert = session.prepare(
                "INSERT INTO buckets (metric, start, total) VALUES (?, ?, ?) USING TTL ?"
            )
            session.execute(insert, ("api.requests.count", 60, 12.5, 3600))
            session.execute(insert, ("api.requests.count", 120, 7.5, 1))
            row = session.execute(
                "SELECT total, TTL(total) AS ttl FROM buckets WHERE metric=%s AND start=60",
                ("api.requests.count",),
            ).one()
            assert row.total == 12.5 and 3500 < row.ttl <= 3600
            time.sleep(2)
            rows = list(session.execute("SELECT start FROM buckets WHERE metric=%s", ("api.requests.count",)))
            assert [r.start for r in rows] == [60]
        finally:
            session.execute(f"DROP KEYSPACE {keyspace}")
    finally:
        cluster.shutdown()
