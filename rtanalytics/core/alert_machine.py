"""The alert state machine: one per rule and group, pure, driven by observations in time.

    ok ──condition true──▶ pending ──true for `duration`──▶ firing ──false for `resolve_duration`──▶ resolved ──▶ ok

An observation is the rule's value at a time, or None when the window held no data. No data is
its own state (`no_data`); the rule says whether it counts as the condition being false (`ok`,
the default) or true (`alerting`). A condition must hold at every observation for `duration`
before firing; one false observation while pending starts over. A firing alert resolves only
after the condition has been false at every observation for `resolve_duration`, so a value
flapping around the threshold does not notify again and again.
"""

from __future__ import annotations

import math
import operator
from collections.abc import Callable
from enum import StrEnum

import attrs

OPERATORS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


class AlertState(StrEnum):
    OK = "ok"
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"
    NO_DATA = "no_data"


@attrs.frozen
class Condition:
    """`value <operator> threshold`, held for `duration_s`, false for `resolve_s` to resolve."""

    operator: str
    threshold: float
    duration_s: float
    resolve_s: float
    no_data_alerts: bool = False

    def holds(self, value: float | None) -> bool:
        if value is None or not math.isfinite(value):
            return self.no_data_alerts
        return OPERATORS[self.operator](value, self.threshold)


@attrs.frozen
class Instance:
    """Where one alert instance stands."""

    state: AlertState = AlertState.OK
    since: float | None = None  # when the condition started holding (pending and firing)
    clear_since: float | None = None  # when it stopped holding while firing
    value: float | None = None
    changed_at: float | None = None


@attrs.frozen
class Transition:
    """A change worth notifying: to firing, or to resolved."""

    state: AlertState
    at: float
    value: float | None


def step(
    instance: Instance, condition: Condition, value: float | None, now: float
) -> tuple[Instance, Transition | None]:
    """The instance after observing `value` at `now`, and the notification this causes, if any."""
    holds = condition.holds(value)
    quiet = AlertState.NO_DATA if value is None else AlertState.OK
    state = instance.state
    if state is AlertState.FIRING:
        if holds:
            return attrs.evolve(instance, clear_since=None, value=value), None
        clear_since = instance.clear_since if instance.clear_since is not None else now
        if now - clear_since >= condition.resolve_s:
            resolved = Instance(AlertState.RESOLVED, None, None, value, now)
            return resolved, Transition(AlertState.RESOLVED, now, value)
        return attrs.evolve(instance, clear_since=clear_since, value=value), None
    if holds:
        since = instance.since if state is AlertState.PENDING and instance.since is not None else now
        if now - since >= condition.duration_s:
            return Instance(AlertState.FIRING, since, None, value, now), Transition(
                AlertState.FIRING, now, value
            )
        if state is AlertState.PENDING:
            return attrs.evolve(instance, value=value), None
        return Instance(AlertState.PENDING, since, None, value, now), None
    if state is quiet:
        return attrs.evolve(instance, value=value), None
    return Instance(quiet, None, None, value, now), None
