"""Where metric data lives: the type registry, series, and bucket states in every tier."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Protocol

import attrs
import numpy as np

from rtanalytics.core.metrics import MetricInfo, PointBatch, StateKind, Tags
from rtanalytics.core.planner import Plan
from rtanalytics.core.states import Partials


@attrs.frozen
class SeriesSet:
    """A metric's series: store-assigned ids (int64) and their tags, position by position."""

    ids: np.ndarray = attrs.field(eq=False)
    tags: tuple[Tags, ...]


@attrs.frozen
class StoreStats:
    """Figures for the health endpoint and the service's own metrics."""

    backend: str
    up: bool
    series_by_tenant: Mapping[str, int]
    metrics_by_tenant: Mapping[str, int]
    details: Mapping[str, object] = attrs.field(factory=dict)


GroupOf = Callable[[Tags], Hashable | None]  # a series' group key in a watch; None: not in it


@attrs.frozen
class WatchRead:
    """What a standing aggregate holds for a span: its group keys (in no particular order), their
    bucket states as (groups x 1), and how many series it takes."""

    keys: tuple[Hashable, ...]
    partials: Partials
    series: int


class MetricStore(Protocol):
    async def start(self) -> None:
        """Connect and create whatever is missing; raise BackendUnavailableError when unreachable."""
        ...

    async def aclose(self) -> None:
        """Flush what is buffered and disconnect."""
        ...

    async def metrics(self, tenant: str) -> Mapping[str, MetricInfo]:
        """Every metric name the tenant has, with its type and window."""
        ...

    async def claim(self, tenant: str, infos: Sequence[MetricInfo]) -> Mapping[str, MetricInfo]:
        """Register names not yet known (first type wins); return the stored info of each name."""
        ...

    async def write(
        self, tenant: str, batch: PointBatch, now: float, max_series: int
    ) -> list[tuple[int, str]]:
        """Add points to every tier keeping their time; return (batch position, reason) of points
        refused because they would start a series over a limit (the tenant's, or the store's)."""
        ...

    async def series(self, tenant: str, name: str) -> SeriesSet:
        """The series of one metric."""
        ...

    async def aggregate(
        self,
        tenant: str,
        name: str,
        kind: StateKind,
        series_ids: np.ndarray,
        groups: np.ndarray,
        group_count: int,
        plan: Plan,
        fields: frozenset[str] | None = None,
    ) -> Partials:
        """Bucket states of the given series merged per (group, plan slot); only `fields` (and
        "sketch") need be filled, None meaning all."""
        ...

    async def watch(self, tenant: str, name: str, kind: StateKind, group_of: GroupOf) -> int | None:
        """Start a standing aggregate (a watch) of one metric: its series merged by group_of,
        seeded from the finest tier and kept up to date by every later write, so that a live
        query reads a row per group instead of every series. None when the store cannot keep
        one -- it does not see every write (another process writes to the same cluster), or it
        has no room; live queries then read series as any query does."""
        ...

    async def read_watch(
        self, watch: int, start: int, end: int, fields: frozenset[str] | None = None
    ) -> WatchRead | None:
        """A watch's groups, each with the buckets of the finest tier in [start, end) merged
        into one slot (only `fields` and "sketch" need be filled, None meaning all); None when
        it can no longer answer (gone, or a new group found no room)."""
        ...

    async def unwatch(self, watch: int) -> None:
        """Stop and free a watch."""
        ...

    async def totals(self, tenant: str, name: str, series_ids: np.ndarray) -> np.ndarray:
        """(count, sum) of every point each series ever took, as an (n, 2) array: counters."""
        ...

    async def evict(self, now: float) -> int:
        """Forget series with no data left in any tier; return how many."""
        ...

    async def stats(self) -> StoreStats:
        """Sizes for health and self-metrics."""
        ...
