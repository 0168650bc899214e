"""Live queries: subscriptions that push their result at once and again whenever it changes.

Subscriptions of a tenant asking the same query form a group. Change notices mark only the
groups on the changed metrics (an index by tenant and metric), so ingesting one metric costs
nothing for subscriptions on others. A marked group is evaluated once for the members whose
`interval` allows, at most once per interval, on the interval's grid of time so that members
come due together; the engine answers from a standing aggregate of each metric (a store
watch) where the store keeps one. Every subscription is also refreshed each REFRESH_S, because
a trailing window changes as time passes even with no new points. Only the groups whose value
changed are pushed; pushing is a non-blocking call into the connection's sink, so a slow client
never slows ingestion or anyone else.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from rtanalytics.core.engine import AnalyticsEngine
from rtanalytics.core.errors import LimitExceededError, NotFoundError, Problem, ValidationError
from rtanalytics.core.query import Query, parse_query
from rtanalytics.core.results import ResultRow
from rtanalytics.ports.clock import Clock

MIN_INTERVAL_MS = 100
DEFAULT_INTERVAL_MS = 1_000
REFRESH_S = 5.0
LIVE_FIELDS = (
    "type",
    "metrics",
    "window",
    "aggregation",
    "filters",
    "group_by",
    "interval_ms",
    "id",
    "percentiles",
)
GroupKey = tuple[tuple[str, Any], ...]


@attrs.frozen
class LiveQuery:
    id: str
    query: Query
    interval_s: float


@attrs.define  # (not frozen: a frozen class's __init__ costs a call per field, and the live
class LiveUpdate:  # loop makes one per subscriber pushed)
    """Rows of one subscription that changed, as of `at`."""

    subscription: str
    rows: tuple[ResultRow, ...]
    at: float


Sink = Callable[[LiveUpdate], None]


def parse_live(message: dict[str, Any], fallback_id: str) -> LiveQuery:
    """A subscribe message: metric names as in the seed, or a whole live query."""
    problems = [
        Problem(k, f"unknown field; known: {', '.join(LIVE_FIELDS)}") for k in message if k not in LIVE_FIELDS
    ]
    interval = message.get("interval_ms", DEFAULT_INTERVAL_MS)
    if type(interval) is not int or interval < MIN_INTERVAL_MS:
        problems.append(Problem("interval_ms", f"must be an integer of at least {MIN_INTERVAL_MS}"))
    sub_id = message.get("id", fallback_id)
    if not isinstance(sub_id, str) or not 0 < len(sub_id) <= 64:
        problems.append(Problem("id", "must be a string of 1 to 64 characters"))
    body = {
        k: message[k]
        for k in ("metrics", "window", "aggregation", "filters", "group_by", "percentiles")
        if k in message
    }
    try:
        query = parse_query(body)
    except ValidationError as exc:
        problems.extend(exc.details)
        query = None
    if query is not None and query.is_range:
        problems.append(
            Problem("start_time", "a live query is a trailing window; leave out start_time and end_time")
        )
    if problems:
        raise ValidationError.of(problems)
    assert query is not None
    return LiveQuery(sub_id, query, interval / 1000)


@attrs.define(eq=False)
class _Group:
    """The subscriptions of one tenant asking the same query: change notices mark the group,
    and one evaluation answers every member that is due."""

    tenant: str
    query: Query
    subscriptions: set[_Subscription] = attrs.field(factory=set)
    version: int = 0  # change notices so far
    values: dict[tuple[str, GroupKey], Any] = attrs.field(factory=dict)  # its last evaluation's answer


@attrs.define(eq=False)
class _Subscription:
    live: LiveQuery
    connection: Connection
    group: _Group
    last: dict[tuple[str, GroupKey], Any] = attrs.field(factory=dict)  # what it was last sent (shared)
    seen: int = -1  # the group's version at this subscription's last evaluation
    due_at: float = 0.0
    refreshed_at: float = 0.0
    # Copied from `live` and `connection`: a push reads this object only (with 1,000 members
    # pushed at once, each other object read is a cache miss on a machine that idled since)
    sink: Sink = attrs.field(init=False)
    id: str = attrs.field(init=False)
    interval_s: float = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self.sink = self.connection.sink
        self.id = self.live.id
        self.interval_s = self.live.interval_s


@attrs.define(eq=False)
class Connection:
    """One client's subscriptions and where their updates go."""

    tenant: str
    client_id: str
    sink: Sink
    subscriptions: dict[str, _Subscription] = attrs.field(factory=dict)


class LiveQueries:
    def __init__(
        self,
        engine: AnalyticsEngine,
        clock: Clock,
        *,
        max_per_tenant: int = 10_000,
        max_per_connection: int = 1_000,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.max_per_tenant = max_per_tenant
        self.max_per_connection = max_per_connection
        self._groups: dict[tuple[str, Query], _Group] = {}
        self._by_metric: dict[tuple[str, str], set[_Group]] = {}
        self._per_tenant: dict[str, int] = {}
        self._connections: set[Connection] = set()
        self._ids = itertools.count(1)
        self._marked: set[_Group] = set()  # changed since some member's last evaluation
        self._next_sweep = 0.0
        self.evaluations = 0  # queries run, for the benchmark and the service's own metrics

    @property
    def connections(self) -> int:
        return len(self._connections)

    @property
    def subscriptions(self) -> int:
        return sum(self._per_tenant.values())

    def connect(self, tenant: str, client_id: str, sink: Sink) -> Connection:
        connection = Connection(tenant, client_id, sink)
        self._connections.add(connection)
        return connection

    def disconnect(self, connection: Connection) -> None:
        for sub_id in list(connection.subscriptions):
            self._drop(connection, sub_id)
        self._connections.discard(connection)

    def connections_of(self, tenant: str) -> Iterable[Connection]:
        return [c for c in self._connections if c.tenant == tenant]

    async def push_now(self, connection: Connection, sub_id: str) -> None:
        """Evaluate one subscription now and push what it answers."""
        subscription = connection.subscriptions.get(sub_id)
        if subscription is not None:
            await self._evaluate([subscription], self.clock.now())

    async def subscribe(self, connection: Connection, message: dict[str, Any]) -> LiveQuery:
        """Add a subscription; nothing is pushed until `push_now` (the caller announces it first)."""
        live = parse_live(message, f"sub-{next(self._ids)}")
        if live.id in connection.subscriptions:
            raise ValidationError.of(
                [Problem("id", f"subscription {live.id!r} already exists on this connection")]
            )
        if len(connection.subscriptions) >= self.max_per_connection:
            raise LimitExceededError(f"a connection may hold at most {self.max_per_connection} subscriptions")
        if self._per_tenant.get(connection.tenant, 0) >= self.max_per_tenant:
            raise LimitExceededError(
                f"tenant {connection.tenant!r} may hold at most {self.max_per_tenant} subscriptions"
            )
        group = self._groups.get((connection.tenant, live.query))
        if group is None:
            group = self._groups[(connection.tenant, live.query)] = _Group(connection.tenant, live.query)
            for name in live.query.metrics:
                self._by_metric.setdefault((connection.tenant, name), set()).add(group)
        subscription = _Subscription(live, connection, group)
        group.subscriptions.add(subscription)
        connection.subscriptions[live.id] = subscription
        self._per_tenant[connection.tenant] = self._per_tenant.get(connection.tenant, 0) + 1
        return live

    def unsubscribe(
        self, connection: Connection, sub_id: str | None = None, metrics: Iterable[str] = ()
    ) -> list[str]:
        """Remove a subscription by id, or every one on any of `metrics`; the ids removed."""
        if sub_id is not None:
            if sub_id not in connection.subscriptions:
                raise NotFoundError(f"no subscription {sub_id!r} on this connection")
            ids = [sub_id]
        else:
            wanted = set(metrics)
            ids = [i for i, s in connection.subscriptions.items() if wanted & set(s.live.query.metrics)]
        for i in ids:
            self._drop(connection, i)
        return ids

    def _drop(self, connection: Connection, sub_id: str) -> None:
        subscription = connection.subscriptions.pop(sub_id)
        self._per_tenant[connection.tenant] -= 1
        group = subscription.group
        group.subscriptions.discard(subscription)
        if group.subscriptions:
            return
        del self._groups[(group.tenant, group.query)]
        self._marked.discard(group)
        for name in group.query.metrics:
            held = self._by_metric.get((group.tenant, name))
            if held is not None:
                held.discard(group)
                if not held:
                    del self._by_metric[(group.tenant, name)]

    def notice(self, tenant: str, names: frozenset[str]) -> None:
        """A change notice: mark the queries on these metrics (and only those)."""
        for name in names:
            for group in self._by_metric.get((tenant, name), ()):
                group.version += 1
                self._marked.add(group)

    async def run_due(self) -> int:
        """Evaluate the subscriptions that are marked, or stale, and whose interval allows;
        return how many queries ran."""
        now = self.clock.now()
        by_group: dict[_Group, list[_Subscription]] = {}
        for group in list(self._marked):
            version = group.version
            waiting = [s for s in group.subscriptions if s.seen < version]
            if not waiting:
                self._marked.discard(group)
                continue
            ready = [s for s in waiting if now >= s.due_at]
            if ready:
                by_group[group] = ready
        if now >= self._next_sweep:  # stale windows: a full scan once a second, not every tick
            self._next_sweep = now + 1.0
            stale = [
                s
                for c in self._connections
                for s in c.subscriptions.values()
                if s.seen == s.group.version and now >= s.due_at and now - s.refreshed_at >= REFRESH_S
            ]
            for s in stale:
                by_group.setdefault(s.group, []).append(s)
        return await self._run(by_group, now) if by_group else 0

    async def _evaluate(self, subscriptions: list[_Subscription], now: float) -> int:
        by_group: dict[_Group, list[_Subscription]] = {}
        for s in subscriptions:
            by_group.setdefault(s.group, []).append(s)
        return await self._run(by_group, now)

    async def _run(self, by_group: dict[_Group, list[_Subscription]], now: float) -> int:
        """Evaluate each group once and push what changed to its members given."""
        for shared, group in by_group.items():
            tenant, query, version = shared.tenant, shared.query, shared.version
            try:
                result = await self.engine.query(query, tenant, live=True)
                rows = result.results
            except ValidationError:
                rows = ()  # e.g. an aggregation the metric's type cannot answer: nothing to push
            self.evaluations += 1
            answered = {row.metric for row in rows}
            # A metric with nothing yet answers "no data" (null), so the first push says so.
            silent = tuple(
                ResultRow(name, {}, query.aggregation or "auto", None, None, query.window_ms or 60_000)
                for name in query.metrics
                if name not in answered
            )
            keyed = [((row.metric, tuple(row.group.items())), row) for row in (*rows, *silent)]
            values = {key: row.value for key, row in keyed}  # shared by every member pushed now
            # Members last pushed by the group's previous evaluation (most, once due together)
            # all hold its values: what changed for them is worked out once.
            previous = shared.values
            common = tuple(row for key, row in keyed if previous.get(key, _UNSEEN) != row.value)
            shared.values = values
            for s in group:
                s.seen = version
                following = s.due_at + s.interval_s  # _next_due, its usual case inline
                s.due_at = following if following > now else _next_due(s.due_at, now, s.interval_s)
                s.refreshed_at = now
                last = s.last
                s.last = values
                if last is previous:
                    if common:
                        s.sink(LiveUpdate(s.id, common, now))
                    continue
                changed = tuple(row for key, row in keyed if last.get(key, _UNSEEN) != row.value)
                if changed:
                    s.sink(LiveUpdate(s.id, changed, now))
        return len(by_group)


_UNSEEN = object()


def _next_due(due: float, now: float, interval: float) -> float:
    """When a subscription that pushed at `now` (it was due at `due`) may push again.

    Pushes fall on the interval's grid of epoch time (multiples of the interval): the members
    of a query group with one interval then come due at the same tick and share one
    evaluation, whatever moment each subscribed at (on their own phases, a group of 20 was
    evaluated at nearly every 50 ms tick instead of every 100 ms). One push per grid step;
    the first after subscribing, or after falling a whole interval behind, waits a full
    interval. Steady pushes are `interval` apart give or take the evaluation loop's lateness."""
    following = due + interval
    if following > now:
        return following
    return math.ceil((now + interval) / interval) * interval
