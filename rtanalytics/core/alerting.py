"""The alerting use cases: manage rules, evaluate them on change notices and on a tick, and
deliver each transition to firing or resolved once per action, retrying with backoff.

Evaluation never waits on a notifier: transitions become delivery tasks of their own, and a
failed attempt is recorded in the rule's events before the next one.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from rtanalytics.core.alert_machine import AlertState, Instance, Transition, step
from rtanalytics.core.alerts import AlertEvent, AlertRule, InstanceView, NotifyDefaults, parse_rule
from rtanalytics.core.engine import AnalyticsEngine
from rtanalytics.core.errors import DeliveryError, NotFoundError, RtAnalyticsError
from rtanalytics.core.metrics import MetricType
from rtanalytics.ports.alert_store import AlertStore
from rtanalytics.ports.clock import Clock
from rtanalytics.ports.notifier import AlertMessage, Notifier

log = logging.getLogger("rtanalytics.alerts")
GroupKey = tuple[tuple[str, str | None], ...]
TransitionListener = Callable[[str, AlertRule, AlertMessage], None]


@attrs.frozen
class RetryPolicy:
    """Attempts per delivery, and the first wait (doubling after each failure)."""

    attempts: int = 5
    first_delay_s: float = 1.0


class AlertService:
    def __init__(
        self,
        engine: AnalyticsEngine,
        store: AlertStore,
        notifier: Notifier,
        clock: Clock,
        defaults: NotifyDefaults,
        *,
        public_url: str = "http://127.0.0.1:8000",
        retry: RetryPolicy | None = None,
    ) -> None:
        self.engine = engine
        self.store = store
        self.notifier = notifier
        self.clock = clock
        self.defaults = defaults
        self.public_url = public_url.rstrip("/")
        self.retry = retry or RetryPolicy()
        self._instances: dict[tuple[str, str], dict[GroupKey, Instance]] = {}
        self._last_error: dict[tuple[str, str], str] = {}
        self._dirty: dict[str, set[str]] = {}
        self._deliveries: set[asyncio.Task[None]] = set()
        self._listeners: list[TransitionListener] = []

    # ---- rules --------------------------------------------------------------------------------

    async def create(self, tenant: str, body: Any) -> AlertRule:
        spec = parse_rule(body, self.defaults)
        now = self.clock.now()
        rule = AlertRule(uuid.uuid4().hex[:16], tenant, spec, 1, now, now)
        await self.store.put(rule, None)
        return rule

    async def get(self, tenant: str, rule_id: str) -> AlertRule:
        rule = await self.store.get(tenant, rule_id)
        if rule is None:
            raise NotFoundError(f"alert {rule_id!r} does not exist in tenant {tenant!r}")
        return rule

    async def rules(self, tenant: str) -> list[AlertRule]:
        return await self.store.all(tenant)

    async def replace(self, tenant: str, rule_id: str, body: Any, version: int | None) -> AlertRule:
        """A new definition for a rule; its alert instances start over from ok."""
        held = await self.get(tenant, rule_id)
        spec = parse_rule(body, self.defaults)
        rule = attrs.evolve(held, spec=spec, version=held.version + 1, updated_at=self.clock.now())
        await self.store.put(rule, version if version is not None else held.version)
        self._instances.pop((tenant, rule_id), None)
        return rule

    async def delete(self, tenant: str, rule_id: str) -> None:
        if not await self.store.delete(tenant, rule_id):
            raise NotFoundError(f"alert {rule_id!r} does not exist in tenant {tenant!r}")
        self._instances.pop((tenant, rule_id), None)

    async def events(self, tenant: str, rule_id: str, limit: int = 100) -> list[AlertEvent]:
        await self.get(tenant, rule_id)
        return await self.store.events(tenant, rule_id, limit)

    def instances(self, rule: AlertRule) -> list[InstanceView]:
        held = self._instances.get((rule.tenant, rule.id), {})
        return [
            InstanceView(dict(key), i.state, i.value, i.since) for key, i in sorted(held.items(), key=_order)
        ]

    def on_transition(self, listener: TransitionListener) -> None:
        """Call `listener(tenant, rule, message)` at every transition to firing or resolved."""
        self._listeners.append(listener)

    # ---- evaluation ---------------------------------------------------------------------------

    def notice(self, tenant: str, names: frozenset[str]) -> None:
        """The engine's change notice: these metrics got points."""
        self._dirty.setdefault(tenant, set()).update(names)

    async def evaluate_noticed(self) -> int:
        """Evaluate the rules of every metric that changed since the last call."""
        dirty, self._dirty = self._dirty, {}
        count = 0
        for tenant, names in dirty.items():
            count += await self.evaluate(tenant, names)
        return count

    async def tick(self) -> int:
        """Evaluate every rule: time passing alone can fire or resolve an alert."""
        self._dirty = {}
        count = 0
        for tenant in await self.store.tenants():
            count += await self.evaluate(tenant)
        return count

    async def evaluate(self, tenant: str, names: set[str] | None = None) -> int:
        """Evaluate the tenant's rules (those on `names` only, when given); return transitions."""
        infos = await self.engine.metrics(tenant)
        transitions = 0
        for rule in await self.store.all(tenant):
            if names is not None and rule.spec.metric not in names:
                continue
            try:
                values = await self._observe(rule, infos)
            except RtAnalyticsError as exc:
                await self._evaluation_failed(rule, str(exc))
                continue
            self._last_error.pop((tenant, rule.id), None)
            transitions += await self._advance(rule, values)
        return transitions

    async def _observe(self, rule: AlertRule, infos: Mapping[str, Any]) -> dict[GroupKey, float | None]:
        query = rule.spec.query
        info = infos.get(rule.spec.metric)
        if query.aggregation is None and info is not None and info.type is MetricType.PERCENTILE:
            query = attrs.evolve(query, aggregation="p99")  # a percentile metric's default, as one number
        # live: a rule asks the same query again every few seconds, like a live query (a watch
        # of the metric answers it; the same answer as reading its series)
        result = await self.engine.query(query, rule.tenant, live=True)
        values: dict[GroupKey, float | None] = {}
        for row in result.results:
            value = row.value
            values[tuple(sorted(row.group.items()))] = (
                float(value) if isinstance(value, (int, float)) else None
            )
        if not query.group_by and not values:
            values[()] = None
        return values

    async def _advance(self, rule: AlertRule, values: dict[GroupKey, float | None]) -> int:
        now = self.clock.now()
        held = self._instances.setdefault((rule.tenant, rule.id), {})
        for key in held:  # a group seen before that has no data now
            values.setdefault(key, None)
        count = 0
        for key, value in values.items():
            instance, transition = step(held.get(key, Instance()), rule.spec.condition, value, now)
            held[key] = instance
            if transition is not None:
                count += 1
                await self._transition(rule, dict(key), transition)
        return count

    async def _transition(
        self, rule: AlertRule, group: dict[str, str | None], transition: Transition
    ) -> None:
        await self.store.add_event(
            rule.tenant, rule.id, AlertEvent(transition.at, transition.state.value, group, transition.value)
        )
        spec = rule.spec
        message = AlertMessage(
            rule.id,
            spec.name,
            rule.tenant,
            spec.metric,
            group,
            transition.state.value,
            transition.value,
            spec.condition.operator,
            spec.condition.threshold,
            spec.severity,
            transition.at,
            f"{self.public_url}/dashboards/{spec.dashboard_id}" if spec.dashboard_id else None,
        )
        for listener in self._listeners:
            listener(rule.tenant, rule, message)
        for action in spec.actions:
            task = asyncio.get_running_loop().create_task(self._deliver(rule, action, message))
            self._deliveries.add(task)
            task.add_done_callback(self._deliveries.discard)

    async def _deliver(self, rule: AlertRule, action: Any, message: AlertMessage) -> None:
        delay = self.retry.first_delay_s
        for attempt in range(1, self.retry.attempts + 1):
            try:
                await self.notifier.deliver(action, message)
            except DeliveryError as exc:
                last = attempt == self.retry.attempts
                detail = f"{exc}; giving up" if last else f"{exc}; retrying in {delay:g}s"
                await self.store.add_event(
                    rule.tenant,
                    rule.id,
                    AlertEvent(
                        self.clock.now(), "delivery_failed", message.group, None, action.type, attempt, detail
                    ),
                )
                if last:
                    return
                await asyncio.sleep(delay)
                delay *= 2
            else:
                await self.store.add_event(
                    rule.tenant,
                    rule.id,
                    AlertEvent(
                        self.clock.now(),
                        "delivered",
                        message.group,
                        None,
                        action.type,
                        attempt,
                        message.state,
                    ),
                )
                return

    async def _evaluation_failed(self, rule: AlertRule, detail: str) -> None:
        key = (rule.tenant, rule.id)
        if self._last_error.get(key) != detail:  # recorded once, not at every evaluation
            self._last_error[key] = detail
            await self.store.add_event(
                rule.tenant, rule.id, AlertEvent(self.clock.now(), "evaluation_failed", detail=detail)
            )

    async def drain(self) -> None:
        """Wait until every delivery in flight has arrived or given up."""
        while self._deliveries:
            await asyncio.gather(*list(self._deliveries), return_exceptions=True)

    async def aclose(self) -> None:
        for task in list(self._deliveries):
            task.cancel()
        await asyncio.gather(*list(self._deliveries), return_exceptions=True)


def _order(item: tuple[GroupKey, Instance]) -> tuple[tuple[bool, str], ...]:
    return tuple((v is None, f"{k}={v or ''}") for k, v in item[0])


__all__ = ["AlertService", "AlertState", "RetryPolicy"]
