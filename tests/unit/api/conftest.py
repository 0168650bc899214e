from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sanic import Sanic

from rtanalytics.adapters.clock import ManualClock
from rtanalytics.bootstrap import bootstrap
from rtanalytics.config import Config
from rtanalytics.entrypoints.http.app import create_app

SEED_NOW = 1_704_110_400.0  # 2024-01-01T12:00:00Z, the end of the seed's time-series query


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(SEED_NOW)


@pytest.fixture
def make_app(clock: ManualClock) -> Callable[..., Sanic]:
    def make(**config: Any) -> Sanic:
        return create_app(bootstrap(Config(**config), clock=clock))

    return make


@pytest.fixture
def app(make_app: Callable[..., Sanic]) -> Sanic:
    return make_app()
