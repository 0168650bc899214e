"""rtanalytics: real-time analytics over windowed, tag-sliced metrics.

from rtanalytics import Engine
engine = Engine()                      # embedded, in memory
await engine.ingest([{"name": "api.requests.count", "type": "count", "tags": {"status": "200"}}])
await engine.query({"metrics": ["api.requests.count"], "window": "1m"})
"""

from __future__ import annotations

from typing import Any

from rtanalytics.core.engine import AnalyticsEngine
from rtanalytics.core.errors import RtAnalyticsError

__all__ = ["Engine", "RtAnalyticsError"]
__version__ = "0.1.0"


class Engine(AnalyticsEngine):
    """The analytics engine for in-process use: memory adapters unless others are given."""

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        from rtanalytics.bootstrap import build_engine
        from rtanalytics.config import Config

        built = build_engine(config or Config(), store=overrides.get("store"), clock=overrides.get("clock"))
        super().__init__(built.store, built.clock, limits=built.limits, tiers=built.tiers)
