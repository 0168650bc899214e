"""The analytics use cases: ingest points, answer queries and current values.

Pure orchestration over the MetricStore and Clock ports; every mode (embedded, distributed,
library) runs this same code.
"""

from __future__ import annotations

import functools
import time
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, cast

import attrs
import numpy as np

from rtanalytics.core.durations import format_duration
from rtanalytics.core.errors import (
    NotFoundError,
    PayloadTooLargeError,
    Problem,
    QueryTooLargeError,
    ValidationError,
)
from rtanalytics.core.metrics import (
    DEFAULT_WINDOW_MS,
    KIND_OF_TYPE,
    MetricInfo,
    MetricType,
    PointBatch,
    Rejection,
    decode_json,
    parse_json_points,
    parse_points,
)
from rtanalytics.core.planner import Plan, plan_range, plan_trailing, range_buckets, trailing_span
from rtanalytics.core.query import Query, TagFilter, parse_query
from rtanalytics.core.results import (
    IngestResult,
    MetricSnapshot,
    QueryMeta,
    QueryResult,
    ResultRow,
    SeriesPoint,
)
from rtanalytics.core.selection import GroupKey, SelectionCache, group_of, group_order
from rtanalytics.core.states import (
    DEFAULT_AGGREGATION,
    DEFAULT_PERCENTILES,
    Partials,
    fields_read,
    supported_aggregations,
    supports,
)
from rtanalytics.core.windows import Tier, default_tiers
from rtanalytics.ports.clock import Clock
from rtanalytics.ports.metric_store import MetricStore

ChangeListener = Callable[[str, frozenset[str]], None]
WATCH_IDLE_S = 60.0  # a watch no live query has read for this long is stopped (tick)
MAX_WATCHES = 1_000


@functools.lru_cache(maxsize=4_096)
def _per_metric(q: Query) -> Query:
    """What of a query decides one metric's rows: all of it but the list of metrics. Live
    queries that share a metric and the rest (dashboards that each add their own metric to a
    common one) then share its answer: one read per change instead of one per query."""
    return attrs.evolve(q, metrics=())


@attrs.define
class _Watching:
    """A store watch kept for live queries on one (tenant, metric, filters, group_by)."""

    id: int | None  # None: the store cannot keep one; asked again once this entry expires
    since: float
    used_at: float


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
        self._types: dict[str, dict[str, MetricType]] = {}
        self._listeners: list[ChangeListener] = []
        self._selections = SelectionCache()
        self._watches: dict[tuple[Any, ...], _Watching] = {}
        # live answers read from watches, valid while the metric takes no point (its version)
        # and the window spans the same buckets: a quiet metric watched by many live queries
        # is read once a second, not once per query per interval
        self._live_answers: dict[tuple[str, Query, str], tuple[int, tuple[int, int], Any]] = {}
        self._versions: dict[tuple[str, str], int] = {}
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
        known = self._types.setdefault(tenant, {})
        batch, rejected = parse_points(raw, now, known_types=known, oldest=self.tiers[-1].oldest(now))
        return await self._accept(tenant, batch, rejected, now)

    async def ingest_json(self, body: bytes, tenant: str = "default") -> IngestResult:
        """`ingest` of a request body `{"metrics": [...]}` as JSON bytes, the seed's format.

        Most bodies are read straight from their bytes (parse_json_points); any other goes
        through orjson and `ingest`, which give the same answer and say what is wrong.
        """
        now = self.clock.now()
        known = self._types.setdefault(tenant, {})
        limit = self.limits.max_points_per_request
        parsed = parse_json_points(
            body, now, known_types=known, oldest=self.tiers[-1].oldest(now), max_points=limit
        )
        points = None
        if parsed is None:
            decoded = decode_json(body)
            points = decoded.get("metrics") if isinstance(decoded, dict) else None
            count = len(points) if isinstance(points, list) else 0
        else:
            count = parsed[0]
        if not count:
            raise ValidationError.of([Problem("metrics", "is required: a non-empty list of metric points")])
        if count > limit:
            raise PayloadTooLargeError(f"metrics: {count} points in one request, at most {limit}")
        if parsed is None:
            assert points is not None
            return await self.ingest(points, tenant)
        _, batch, rejected = parsed
        return await self._accept(tenant, batch, rejected, now)

    async def _accept(
        self, tenant: str, batch: PointBatch, rejected: list[Rejection], now: float
    ) -> IngestResult:
        """Register and store a parsed batch; tell listeners what changed."""
        infos = self._infos.setdefault(tenant, {})
        known = self._types.setdefault(tenant, {})
        names = batch.name_set()  # once per batch: registration and change notices both need it
        if len(batch):
            parsed = batch
            batch, more = await self._register(tenant, batch, names, infos, known)
            rejected.extend(more)
            if batch is not parsed:
                names = batch.name_set()
        accepted = 0
        if len(batch):
            refused = await self.store.write(tenant, batch, now, self.limits.max_series_per_tenant)
            for i, reason in refused:
                problem = Problem(f"metrics[{batch.index[i]}]", f"would start a new series, but {reason}")
                rejected.append(Rejection(batch.index[i], (problem,)))
            accepted = len(batch) - len(refused)
            if accepted and self._live_answers:
                versions = self._versions
                for name in names:
                    versions[(tenant, name)] = versions.get((tenant, name), 0) + 1
            if accepted and self._listeners:
                for listener in self._listeners:
                    listener(tenant, names)
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

    async def _register(
        self,
        tenant: str,
        batch: PointBatch,
        names: frozenset[str],
        infos: dict[str, MetricInfo],
        known: dict[str, MetricType],
    ) -> tuple[PointBatch, list[Rejection]]:
        """Claim names seen for the first time and apply `window` updates; refuse type conflicts
        between new names in one batch (the store's first claim wins)."""
        wanted: dict[str, MetricInfo] = {}
        fresh = [name for name in names if name not in known]
        for name in fresh:
            first = batch.names.index(name)
            wanted[name] = MetricInfo(name, batch.types[first], batch.windows.get(name, DEFAULT_WINDOW_MS))
        for name, window in batch.windows.items():
            held = infos.get(name)
            if held is not None and held.window_ms != window and name not in wanted:
                wanted[name] = MetricInfo(name, held.type, window)
        if not wanted:
            return batch, []
        claimed = await self.store.claim(tenant, list(wanted.values()))
        infos.update(claimed)
        known.update({name: info.type for name, info in claimed.items()})
        if not fresh:
            return batch, []
        fresh_set = set(fresh)
        keep = []
        rejected = []
        for i, (name, mtype) in enumerate(zip(batch.names, batch.types)):
            held_type = known[name]
            ok = name not in fresh_set or held_type is mtype
            keep.append(ok)
            if not ok:
                problem = Problem(
                    f"metrics[{batch.index[i]}].type",
                    f"metric {name!r} is of type {held_type.value}; a point of type {mtype.value} is refused",
                )
                rejected.append(Rejection(batch.index[i], (problem,)))
        return (batch.select(keep) if rejected else batch), rejected

    # ---- queries ------------------------------------------------------------------------------

    async def metrics(self, tenant: str = "default") -> Mapping[str, MetricInfo]:
        """Every metric the tenant has."""
        return await self.store.metrics(tenant)

    async def query(
        self, query: Query | Mapping[str, Any], tenant: str = "default", *, live: bool = False
    ) -> QueryResult:
        """Answer a query (a `Query` or the JSON body of /api/v1/query).

        `live`: the query will be asked again and again (a live query). A trailing window is then
        answered from a standing aggregate (a store watch) of each metric where the store keeps
        one: a row per group instead of every series. The answer is the same; only sums may
        differ in the last bits, being added in another order. `tick()` stops watches no live
        query has read for a minute (the service calls it every few seconds)."""
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
            out, matched, plan, cut = await self._run_one(q, info, tenant, now, live)
            rows.extend(out)
            omitted += plan.omitted
            resolution_used = plan.resolution_s
            truncated = truncated or cut
            series_total += matched
            resolution = min(resolution, resolution_used)
            points_total += (
                sum(len(r.points) for r in out if r.points is not None) if q.is_range else len(out)
            )
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
        self, q: Query, info: MetricInfo, tenant: str, now: float, live: bool = False
    ) -> tuple[list[ResultRow], int, Plan, bool]:
        kind = KIND_OF_TYPE[info.type]
        aggregation = q.aggregation or DEFAULT_AGGREGATION[info.type]
        window_s = self._window_s(q, info)
        span = self._watchable(window_s, now) if live and not q.is_range else None
        if span is not None:
            version = self._versions.get((tenant, info.name), 0)
            held = self._live_answers.get((tenant, _per_metric(q), info.name))
            if held is not None and held[0] == version and held[1] == span:
                return held[2]  # type: ignore[no-any-return]
        watched = (
            await self._read_watch(q, info, tenant, now, span, window_s, aggregation)
            if span is not None
            else None
        )
        if watched is not None:
            keys, labels, partials, matched, plan = watched
        else:
            if q.is_range:
                assert q.start is not None
                plan = plan_range(q.start, q.end if q.end is not None else now, window_s, now, self.tiers)
            else:
                plan = plan_trailing(window_s, now, self.tiers)
            series = await self.store.series(tenant, info.name)
            selection = self._selections.get(tenant, info.name, series, q)
            self._check_size(plan, len(selection.keys), info.name)
            keys = selection.keys if (selection.keys or q.group_by) else ((),)
            labels = selection.labels if (selection.keys or q.group_by) else ({},)
            partials = await self.store.aggregate(
                tenant,
                info.name,
                kind,
                selection.ids,
                selection.groups,
                len(keys),
                plan,
                fields_read(aggregation),
            )
            matched = len(selection.ids)
        percentiles = q.percentiles or DEFAULT_PERCENTILES
        values = partials.values(aggregation, window_s, percentiles)
        present = partials.present()
        window_ms = window_s * 1000
        rows = []
        if q.is_range:
            for g in range(len(keys)):
                row = values[g]
                points = tuple(
                    SeriesPoint(plan.slot_starts[s], row[s]) for s in np.flatnonzero(present[g]).tolist()
                )
                if points:
                    rows.append(
                        ResultRow(info.name, labels[g], aggregation, points=points, window_ms=window_ms)
                    )
        else:
            column = [cells[0] for cells in values]
            # tuple.__new__ skips NamedTuple's Python-level __new__: ~1 -> ~0.2 us a row (1,000 groups)
            new, name = tuple.__new__, info.name
            rows = [
                new(ResultRow, (name, labels[g], aggregation, column[g], None, window_ms))
                for g in (np.flatnonzero(present[:, 0]).tolist() if q.group_by else range(len(keys)))
            ]
        rows, cut = _limit(rows, q.limit)
        # only answers read from a watch are kept: stores keep watches only when they see every
        # write, so the versions counted from this process's batches tell every change
        if watched is not None and span is not None:
            if len(self._live_answers) >= MAX_WATCHES * 4:
                self._live_answers.clear()
            self._live_answers[(tenant, _per_metric(q), info.name)] = (
                version,
                span,
                (rows, matched, plan, cut),
            )
        return rows, matched, plan, cut

    @property
    def watches(self) -> int:
        """Store watches kept for live queries now."""
        return sum(1 for w in self._watches.values() if w.id is not None)

    def _check_size(self, plan: Plan, group_count: int, name: str) -> None:
        size = plan.slots * max(1, group_count)
        if size > self.limits.max_query_size:
            raise QueryTooLargeError.of(
                [
                    Problem(
                        "group_by",
                        f"{plan.slots} buckets x {group_count} groups = {size} values for {name!r}, "
                        f"over MAX_QUERY_SIZE={self.limits.max_query_size}",
                    )
                ]
            )

    def _watchable(self, window_s: int, now: float) -> tuple[int, int] | None:
        """The [start, end) of a trailing window when the finest tier alone answers it exactly
        with the edges plan_trailing gives (a grid of the finest resolution); else None."""
        finest = self.tiers[0]
        start, end, grid = trailing_span(window_s, now, self.tiers)
        if grid != finest.resolution_s or end != finest.bucket(now) + grid or start < finest.oldest(now):
            return None
        return start, end

    async def _read_watch(
        self,
        q: Query,
        info: MetricInfo,
        tenant: str,
        now: float,
        span: tuple[int, int],
        window_s: int,
        aggregation: str,
    ) -> tuple[tuple[GroupKey, ...], tuple[dict[str, str | None], ...], Partials, int, Plan] | None:
        """A live trailing query of one metric over `span` from the store's watch of it
        (started on first use); None when it has to read series (a store that keeps no watch)."""
        key = (tenant, info.name, q.filters, q.group_by)
        watching = self._watches.get(key)
        if watching is None:
            if len(self._watches) >= MAX_WATCHES:
                return None
            wid = await self.store.watch(tenant, info.name, KIND_OF_TYPE[info.type], group_of(q))
            watching = self._watches[key] = _Watching(wid, now, now)
        watching.used_at = now
        if watching.id is None:
            return None
        read = await self.store.read_watch(watching.id, *span, fields_read(aggregation))
        if read is None:  # broken (no room for a new group): read series from now on
            await self.store.unwatch(watching.id)
            watching.id = None
            return None
        kind = KIND_OF_TYPE[info.type]
        plan = Plan((float(span[0]),), window_s, (), self.tiers[0].resolution_s)
        group_keys = cast(list[GroupKey], list(read.keys))  # what group_of(q) gave: tuples
        order = sorted(range(len(group_keys)), key=lambda i: group_order(group_keys[i]))
        self._check_size(plan, len(order), info.name)
        if not order and not q.group_by:
            return ((),), ({},), Partials(kind, 1, 1), read.series, plan
        partials = read.partials.take(order) if order != list(range(len(order))) else read.partials
        keys = tuple(group_keys[i] for i in order)
        labels = tuple(dict(zip(q.group_by, k)) for k in keys)
        return keys, labels, partials, read.series, plan

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

    async def snapshots(self, tenant: str = "default") -> AsyncIterator[MetricSnapshot]:
        """Every metric of the tenant, series by series, one metric at a time (for exports)."""
        now = self.clock.now()
        infos = await self.store.metrics(tenant)
        for name in sorted(infos):
            info = infos[name]
            series = await self.store.series(tenant, name)
            if len(series.ids) == 0:
                continue
            aggregation = DEFAULT_AGGREGATION[info.type]
            window_s = max(1, info.window_ms // 1000)
            values: list[Any] = [None] * len(series.ids)
            if info.type not in (MetricType.COUNT, MetricType.SUM):  # counters read totals only
                plan = plan_trailing(window_s, now, self.tiers)
                groups = np.arange(len(series.ids), dtype=np.int64)
                partials = await self.store.aggregate(
                    tenant,
                    name,
                    KIND_OF_TYPE[info.type],
                    series.ids,
                    groups,
                    len(groups),
                    plan,
                    fields_read(aggregation),
                )
                values = [cells[0] for cells in partials.values(aggregation, window_s, DEFAULT_PERCENTILES)]
            totals = await self.store.totals(tenant, name, series.ids)
            yield MetricSnapshot(
                info, aggregation, series.tags, values, totals[:, 0].tolist(), totals[:, 1].tolist()
            )

    async def tick(self) -> int:
        """Housekeeping: forget series with no data left in any tier, and stop watches no live
        query has read for WATCH_IDLE_S (a refused one is asked for again after that)."""
        now = self.clock.now()
        for key, watching in list(self._watches.items()):
            if now - watching.used_at > WATCH_IDLE_S or (
                watching.id is None and now - watching.since > WATCH_IDLE_S
            ):
                del self._watches[key]
                if watching.id is not None:
                    await self.store.unwatch(watching.id)
        return await self.store.evict(now)


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

    kept = set(map(id, sorted(rows, key=score, reverse=True)[:limit]))
    return [r for r in rows if id(r) in kept], True  # still in group order


__all__ = ["AnalyticsEngine", "EngineLimits", "MetricType"]
