"""Bucket states merge associatively and commutatively, and Partials follow the same rules."""

import math

from hypothesis import given
from hypothesis import strategies as st

from rtanalytics.core.metrics import StateKind
from rtanalytics.core.states import BucketState, Partials

point = st.tuples(
    st.integers(min_value=0, max_value=50).map(float),  # timestamps collide on purpose: ties matter
    st.integers(min_value=-100, max_value=100).map(float),
)
points = st.lists(point, max_size=12)
kinds = st.sampled_from([StateKind.SUM, StateKind.FULL, StateKind.QUANTILE])


def same(a: BucketState, b: BucketState) -> bool:
    plain = (a.count, a.sum, a.min, a.max, a.last, a.last_ts) == (
        b.count,
        b.sum,
        b.min,
        b.max,
        b.last,
        b.last_ts,
    )
    return plain and a.sketch == b.sketch


@given(kinds, points, points, points)
def test_merge_is_associative(kind: StateKind, xs: list, ys: list, zs: list) -> None:
    a, b, c = (BucketState.of(kind, p) for p in (xs, ys, zs))
    assert same(a.merge(b).merge(c), a.merge(b.merge(c)))


@given(kinds, points, points)
def test_merge_is_commutative(kind: StateKind, xs: list, ys: list) -> None:
    a, b = BucketState.of(kind, xs), BucketState.of(kind, ys)
    assert same(a.merge(b), b.merge(a))


@given(kinds, points, points)
def test_merge_equals_the_state_of_all_points(kind: StateKind, xs: list, ys: list) -> None:
    assert same(BucketState.of(kind, xs).merge(BucketState.of(kind, ys)), BucketState.of(kind, xs + ys))


@given(points)
def test_last_is_the_latest_point_and_ties_take_the_larger_value(xs: list) -> None:
    state = BucketState.of(StateKind.FULL, xs)
    if xs:
        assert (state.last_ts, state.last) == max(xs)
    else:
        assert state.count == 0 and math.isinf(state.last_ts)


def as_partials(kind: StateKind, state: BucketState) -> Partials:
    grid = Partials(kind, 1, 1)
    for name, array in grid.fields.items():
        array[0, 0] = getattr(state, name)
    if grid.sketches is not None:
        grid.sketches[0, 0] = state.sketch.copy() if state.sketch is not None else None
    return grid


@given(kinds, points, points)
def test_partials_merge_like_bucket_states(kind: StateKind, xs: list, ys: list) -> None:
    a, b = BucketState.of(kind, xs), BucketState.of(kind, ys)
    expected = a.merge(b)
    grid = as_partials(kind, a)
    grid.merge(as_partials(kind, b))
    for name, array in grid.fields.items():
        assert array[0, 0] == getattr(expected, name)
    if grid.sketches is not None:
        assert grid.sketches[0, 0] == expected.sketch


def test_values_of_an_empty_grid_are_absent() -> None:
    grid = Partials(StateKind.FULL, 2, 3)
    assert not grid.present().any()
    assert grid.values("avg", 60, ()) == [[None] * 3, [None] * 3]
