"""The alert state machine fires and resolves exactly when a brute-force reading of the
observations says it should, and never notifies firing twice without a resolved between."""

from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from rtanalytics.core.alert_machine import OPERATORS, AlertState, Condition, Instance, step

observations = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=120),
        st.one_of(st.none(), st.integers(min_value=0, max_value=10).map(float)),
    ),
    max_size=60,
).map(lambda steps: [(sum(d for d, _ in steps[: i + 1]), v) for i, (_, v) in enumerate(steps)])
conditions = st.builds(
    Condition,
    st.sampled_from(sorted(OPERATORS)),
    st.integers(min_value=0, max_value=10).map(float),
    st.sampled_from([0.0, 30.0, 60.0, 300.0]),
    st.sampled_from([0.0, 30.0, 120.0, 300.0]),
    st.booleans(),
)


def brute_force(obs: list[tuple[int, float | None]], c: Condition) -> list[tuple[str, int]]:
    """Fire at j when, not firing, some run of observations i..j all hold and spans `duration`;
    resolve at j when, firing, some run i..j after the firing all fail and spans `resolve`."""
    holds = [c.holds(v) for _, v in obs]
    events: list[tuple[str, int]] = []
    firing_at: int | None = None
    last_resolved = -1
    for j, (t, _) in enumerate(obs):
        if firing_at is None:
            if any(
                all(holds[i : j + 1]) and t - obs[i][0] >= c.duration_s
                for i in range(last_resolved + 1, j + 1)
            ):
                events.append(("firing", t))
                firing_at = j
        elif any(
            not any(holds[i : j + 1]) and t - obs[i][0] >= c.resolve_s for i in range(firing_at + 1, j + 1)
        ):
            events.append(("resolved", t))
            firing_at, last_resolved = None, j
    return events


def run(obs: list[tuple[int, float | None]], c: Condition) -> list[tuple[str, int]]:
    instance = Instance()
    events = []
    for t, v in obs:
        instance, transition = step(instance, c, v, float(t))
        if transition is not None:
            events.append((transition.state.value, int(transition.at)))
    return events


@given(observations, conditions)
def test_machine_matches_the_brute_force_reading(obs, condition) -> None:
    assert run(obs, condition) == brute_force(obs, condition)


@given(observations, conditions)
def test_firing_and_resolved_alternate(obs, condition) -> None:
    states = [s for s, _ in run(obs, condition)]
    assert all(a != b for a, b in itertools.pairwise(states))
    assert not states or states[0] == "firing"


def test_flapping_around_the_threshold_does_not_spam() -> None:
    c = Condition(">", 0.05, 60.0, 300.0)
    instance = Instance()
    sent = []
    for t in range(0, 3_600, 30):
        value = 0.1 if (t // 30) % 2 == 0 or t < 120 else 0.01  # above, then flapping every 30 s
        instance, transition = step(instance, c, value, float(t))
        if transition:
            sent.append(transition.state)
    assert sent == [AlertState.FIRING]


def test_no_data_is_its_own_state_and_can_alert() -> None:
    quiet = Condition(">", 1.0, 0.0, 0.0)
    instance, transition = step(Instance(), quiet, None, 0.0)
    assert instance.state is AlertState.NO_DATA and transition is None
    loud = Condition(">", 1.0, 0.0, 0.0, no_data_alerts=True)
    instance, transition = step(Instance(), loud, None, 0.0)
    assert instance.state is AlertState.FIRING and transition is not None
