from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.integration.servers import Endpoint, find


def _server(name: str) -> Iterator[Endpoint]:
    try:
        endpoint = find(name)
    except RuntimeError as exc:
        pytest.fail(str(exc), pytrace=False)
    yield endpoint
    if endpoint.stop is not None:
        endpoint.stop()


@pytest.fixture(scope="session")
def ignite_server() -> Iterator[Endpoint]:
    yield from _server("ignite")


@pytest.fixture(scope="session")
def pulsar_server() -> Iterator[Endpoint]:
    yield from _server("pulsar")


@pytest.fixture(scope="session")
def cassandra_server() -> Iterator[Endpoint]:
    yield from _server("cassandra")
