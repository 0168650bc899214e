"""Change notices across service instances that share one Ignite cluster.

Notices from this process go straight to its handlers; notices of other instances arrive when
the store reads their writers' markers (every `sync_interval_s`), which list the metrics each
flush changed. The Pulsar updates topic (SPEC §1) can replace this behind the same port.
"""

from __future__ import annotations

from rtanalytics.adapters.memory.update_bus import InProcessUpdateBus
from rtanalytics.ports.update_bus import ChangeHandler

from .metric_store import IgniteMetricStore


class IgniteUpdateBus:
    def __init__(self, store: IgniteMetricStore) -> None:
        self._local = InProcessUpdateBus()
        store.on_remote_change(self._local.publish)

    def publish(self, tenant: str, names: frozenset[str]) -> None:
        self._local.publish(tenant, names)

    def subscribe(self, handler: ChangeHandler) -> None:
        self._local.subscribe(handler)
