"""The analytics use cases: ingest points, answer queries and current values.

Pure orchestration over the MetricStore and Clock ports; every mode (embedded, distributed,
library) runs this same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from rtanalytics.core.durations import format_duration
from rtanalytics.core.errors import (
    NotFoundError,
    Problem,
    QueryTooLargeError,
    ValidationError,
)
from rtanalytics.core.metrics import (
    KIND_OF_TYPE,
    MetricInfo,
    MetricType,
    PointBatch,
    Rejection,
    parse_points,
)
from rtanalytics.core.planner import Plan, plan_range, plan_trailing, range_buckets
from rtanalytics.core.query import Query, TagFilter, parse_query
from rtanalytics.core.results import IngestResult, QueryMeta, QueryResult, ResultRow, SeriesPoint
from rtanalytics.core.states import DEFAULT_AGGREGATION, DEFAULT_PERCENTILES, supported_aggregations, supports
from rtanalytics.core.windows import Tier, default_tiers
from rtanalytics.ports.clock import Clock
from rtanalytics.ports.metric_store import MetricStore

ChangeListener = Callable[[str, frozenset[str]], None]


@attrs.frozen
class EngineLimits:
    """Per-tenant and per-request limits (SPEC §3, §7)."""

    max_query_size: int = 100_000
    max_series_per_tenant: int = 100_000
    max_points_per_request: int = 10_000


class AnalyticsEngine:
    """Ingest and query, for one process, over whichever store it is given."""

    def __init__(
        self,
        store: MetricStore,
        clock: Clock,
        *,
        limits: EngineLimits | None = None,
        tiers: Sequence[Tier] | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.limits = limits or EngineLimits()
        self.tiers = tuple(tiers) if tiers is not None else default_tiers()
        self._infos: dict[str, dict[str, MetricInfo]] = {}
        self._listeners: list[ChangeListener] = []
        self.points_accepted = 0
        self.points_rejected: dict[str, int] = {}

    async def start(self) -> None:
        await self.store.start()

    async def aclose(self) -> None:
        await self.store.aclose()

    def on_change(self, listener: ChangeListener) -> None:
        """Call `listener(tenant, metric names)` after every ingest that changed something."""
        self._listeners.append(listener)

    # ---- ingest -------------------------------------------------------------------------------

    async def ingest(self, points: Sequence[Mapping[str, Any]], tenant: str = "default") -> IngestResult:
        """Validate and store points; valid ones are kept even when others are rejected."""
        if len(points) > self.limits.max_points_per_request:
            raise ValidationError.of(
                [
                    Problem(
                        "metrics",
                        f"has {len(points)} points, at most {self.limits.max_points_per_request} per request",
                    )
                ]
            )
        now = self.clock.now()
        raw = points if isinstance(points, list) else list(points)
        batch, rejected = parse_points(raw, now)
        if len(batch):
            batch, more = await self._check_against_store(tenant, batch, now)
            rejected.extend(more)
        if len(batch):
            refused = await self.store.write(tenant, batch, now, self.limits.max_series_per_tenant)
            if refused:
                limit = self.limits.max_series_per_tenant
                for i in refused:
                    problem = Problem(
                        f"metrics[{batch.index[i]}]",
                        f"would start a new series, but tenant {tenant!r} has reached its limit of {limit} active series",
                    )
                    rejected.append(Rejection(batch.index[i], (problem,)))
            accepted = len(batch) - len(refused)
            if accepted and self._listeners:
                names = frozenset(batch.names)
                for listener in self._listeners:
                    listener(tenant, names)
        else:
            accepted = 0
        rejected.sort(key=lambda r: r.index)
        self._count(accepted, rejected)
        return IngestResult(accepted, tuple(rejected))

    def _count(self, accepted: int, rejected: Sequence[Rejection]) -> None:
        self.points_accepted += accepted
        for r in rejected:
            reason = r.problems[0].field.rsplit(".", 1)[-1] if r.problems else "invalid"
            if "]" in reason:
                reason = "point"
            self.points_rejected[reason] = self.points_rejected.get(reason, 0) + 1

    async def _check_against_store(
        self, tenant: str, batch: PointBatch, now: float
    ) -> tuple[PointBatch, list[Rejection]]:
        """Type conflicts, retention, and the metric registry."""
        infos = self._infos.setdefault(tenant, {})
        wanted: dict[str, MetricInfo] = {}
        for name, mtype in zip(batch.names, batch.types):
            if name not in infos and name not in wanted:
                wanted[name] = MetricInfo(name, mtype, batch.windows.get(name, 60_000))
        for name, window in batch.windows.items():
            held = infos.get(name)
            if held is not None and held.window_ms != window and name not in wanted:
                wanted[name] = MetricInfo(name, held.type, window)
        if wanted:
            infos.update(await self.store.claim(tenant, list(wanted.values())))
        oldest = self.tiers[-1].oldest(now)
        keep = []
        rejected = []
        for i, (name, mtype, ts) in enumerate(zip(batch.names, batch.types, batch.timestamps)):
            problems = []
            held_type = infos[name].type
            if held_type is not mtype:
                problems.append(
                    Problem(
                        f"metrics[{batch.index[i]}].type",
                        f"metric {name!r} is of type {held_type.value}; a point of type {mtype.value} is refused",
                    )
                )
            if ts < oldest:
                problems.append(
                    Problem(
                        f"metrics[{batch.index[i]}].timestamp",
                        f"is older than the longest retention ({format_duration(self.tiers[-1].retention_s * 1000)})",
                    )
                )
            keep.append(not problems)
            if problems:
                rejected.append(Rejection(batch.index[i], tuple(problems)))
        if rejected:
            batch = batch.select(keep)
        return batch, rejected

    # ---- queries ------------------------------------------------------------------------------

    async def metrics(self, tenant: str = "default") -> Mapping[str, MetricInfo]:
        """Every metric the tenant has."""
        return await self.store.metrics(tenant)

    async def query(self, query: Query | Mapping[str, Any], tenant: str = "default") -> QueryResult:
        """Answer a query (a `Query` or the JSON body of /api/v1/query)."""
        started = time.perf_counter()
        q = query if isinstance(query, Query) else parse_query(query)
        now = self.clock.now()
        infos = await self.store.metrics(tenant)
        self._check_query(q, infos, now)
        rows: list[ResultRow] = []
        series_total = points_total = 0
        resolution = self.tiers[-1].resolution_s
        truncated = False
        omitted = 0
        unknown = tuple(m for m in q.metrics if m not in infos)
        for name in q.metrics:
            info = infos.get(name)
            if info is None:
                continue
            out, matched, plan, cut = await self._run_one(q, info, tenant, now)
            rows.extend(out)
            omitted += plan.omitted
            resolution_used = plan.resolution_s
            truncated = truncated or cut
            series_total += matched
            resolution = min(resolution, resolution_used)
            points_total += sum(len(r.points) if r.points is not None else 1 for r in out)
        took = (time.perf_counter() - started) * 1000
        meta = QueryMeta(
            resolution * 1000, series_total, points_total, round(took, 3), unknown, truncated, omitted
        )
        return QueryResult(tuple(rows), meta)

    def _check_query(self, q: Query, infos: Mapping[str, MetricInfo], now: float) -> None:
        problems = []
        for name in q.metrics:
            info = infos.get(name)
            if info is None:
                continue
            if q.aggregation is not None and not supports(KIND_OF_TYPE[info.type], q.aggregation):
                problems.append(
                    Problem(
                        "aggregation",
                        f"{q.aggregation!r} is not available for {name!r} (type {info.type.value}); "
                        f"use one of {', '.join(supported_aggregations(info.type))}",
                    )
                )
        if problems:
            raise ValidationError.of(problems)
        if q.is_range:
            assert q.start is not None
            end = q.end if q.end is not None else now
            for name in q.metrics:
                window_s = self._window_s(q, infos.get(name))
                buckets = range_buckets(q.start, end, window_s)
                if buckets > self.limits.max_query_size:
                    raise QueryTooLargeError.of(
                        [
                            Problem(
                                "window",
                                f"the range spans {buckets} buckets of {format_duration(window_s * 1000)}, "
                                f"over MAX_QUERY_SIZE={self.limits.max_query_size}",
                            )
                        ]
                    )

    @staticmethod
    def _window_s(q: Query, info: MetricInfo | None) -> int:
        window_ms = q.window_ms or (info.window_ms if info is not None else 60_000)
        return max(1, window_ms // 1000)

    async def _run_one(
        self, q: Query, info: MetricInfo, tenant: str, now: float
    ) -> tuple[list[ResultRow], int, Plan, bool]:
        kind = KIND_OF_TYPE[info.type]
        aggregation = q.aggregation or DEFAULT_AGGREGATION[info.type]
        window_s = self._window_s(q, info)
        plan: Plan
        if q.is_range:
            assert q.start is not None
            plan = plan_range(q.start, q.end if q.end is not None else now, window_s, now, self.tiers)
        else:
            plan = plan_trailing(window_s, now, self.tiers)
        series = await self.store.series(tenant, info.name)
        group_index: dict[tuple[str | None, ...], int] = {}
        ids: list[int] = []
        groups: list[int] = []
        for sid, tags in zip(series.ids.tolist(), series.tags):
            if not q.matches(tags):
                continue
            if q.group_by:
                as_dict = dict(tags)
                key = tuple(as_dict.get(k) for k in q.group_by)
            else:
                key = ()
            g = group_index.get(key)
            if g is None:
                g = group_index[key] = len(group_index)
            ids.append(sid)
            groups.append(g)
        size = plan.slots * max(1, len(group_index))
        if size > self.limits.max_query_size:
            raise QueryTooLargeError.of(
                [
                    Problem(
                        "group_by",
                        f"{plan.slots} buckets x {len(group_index)} groups = {size} values for {info.name!r}, "
                        f"over MAX_QUERY_SIZE={self.limits.max_query_size}",
                    )
                ]
            )
        if not group_index and not q.group_by:
            group_index[()] = 0
        partials = await self.store.aggregate(
            tenant,
            info.name,
            kind,
            np.array(ids, dtype=np.int64),
            np.array(groups, dtype=np.int64),
            len(group_index),
            plan,
        )
        percentiles = q.percentiles or DEFAULT_PERCENTILES
        values = partials.values(aggregation, window_s, percentiles)
        present = partials.present()
        rows = []
        for key, g in group_index.items():
            group = dict(zip(q.group_by, key))
            if q.is_range:
                points = tuple(
                    SeriesPoint(plan.slot_starts[s], values[g, s])
                    for s in np.flatnonzero(present[g]).tolist()
                )
                if points:
                    rows.append(
                        ResultRow(info.name, group, aggregation, points=points, window_ms=window_s * 1000)
                    )
            elif present[g, 0] or not q.group_by:
                rows.append(
                    ResultRow(info.name, group, aggregation, value=values[g, 0], window_ms=window_s * 1000)
                )
        rows, cut = _limit(rows, q.limit)
        rows.sort(key=lambda r: tuple((v is None, v or "") for v in r.group.values()))
        return rows, len(ids), plan, cut

    async def current(
        self,
        name: str,
        tenant: str = "default",
        *,
        tags: Mapping[str, str] | None = None,
        window: str | None = None,
        aggregation: str | None = None,
        group_by: Sequence[str] = (),
    ) -> QueryResult:
        """The metric's value over its window ending now; NotFoundError for a name never seen."""
        infos = await self.store.metrics(tenant)
        if name not in infos:
            raise NotFoundError(f"metric {name!r} has never been seen in tenant {tenant!r}")
        body: dict[str, Any] = {"metrics": [name]}
        if window is not None:
            body["window"] = window
        if aggregation is not None:
            body["aggregation"] = aggregation
        if group_by:
            body["group_by"] = list(group_by)
        q = parse_query(body)
        if tags:
            q = attrs.evolve(q, filters=tuple(TagFilter(k, "eq", v) for k, v in tags.items()))
        return await self.query(q, tenant)

    async def tick(self) -> int:
        """Housekeeping: forget series with no data left in any tier."""
        return await self.store.evict(self.clock.now())


def _rank(value: Any) -> float:
    if isinstance(value, dict):
        value = next(iter(value.values()), None)
    return float(value) if isinstance(value, (int, float)) else float("-inf")


def _limit(rows: list[ResultRow], limit: int | None) -> tuple[list[ResultRow], bool]:
    """Keep the `limit` groups with the largest value (time series: largest point)."""
    if limit is None or len(rows) <= limit:
        return rows, False

    def score(row: ResultRow) -> float:
        if row.points is not None:
            return max((_rank(p.value) for p in row.points), default=float("-inf"))
        return _rank(row.value)

    return sorted(rows, key=score, reverse=True)[:limit], True


__all__ = ["AnalyticsEngine", "EngineLimits", "MetricType"]
