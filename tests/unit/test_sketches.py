"""Sketch bounds against numpy's exact answers, merging, encoding, and the reference DDSketch."""

import itertools

import numpy as np
import pytest
from ddsketch import DDSketch
from hypothesis import example, given
from hypothesis import strategies as st

from rtanalytics.core.sketches import RELATIVE_ACCURACY, DistinctSketch, QuantileSketch, _bin_value

values = st.lists(
    st.one_of(
        st.floats(min_value=-1e9, max_value=1e9, allow_nan=False, allow_infinity=False),
        st.floats(min_value=1e-6, max_value=1e6),
        st.integers(min_value=-1000, max_value=1000).map(float),
    ),
    min_size=1,
    max_size=300,
)
QUANTILES = (0.0, 0.01, 0.25, 0.5, 0.9, 0.95, 0.99, 1.0)


def within_bound(estimate: float, exact: float) -> bool:
    return abs(estimate - exact) <= RELATIVE_ACCURACY * abs(exact) + 1e-9


@given(values)
def test_quantiles_within_relative_value_error(xs: list[float]) -> None:
    sketch = QuantileSketch()
    sketch.add_many(xs)
    for q in QUANTILES:
        exact = float(np.quantile(np.array(xs), q, method="lower"))
        estimate = sketch.quantile(q)
        assert estimate is not None and within_bound(estimate, exact), (q, estimate, exact)


@given(values, st.integers(min_value=1, max_value=5))
def test_merged_parts_equal_the_sketch_of_the_whole(xs: list[float], parts: int) -> None:
    whole = QuantileSketch()
    for x in xs:
        whole.add(x)
    merged = QuantileSketch()
    for chunk in np.array_split(np.array(xs), parts):
        part = QuantileSketch()
        part.add_many(chunk)
        merged.merge(part)
    assert merged == whole  # DDSketch merging is exact: the same bins, the same counts


def test_agrees_with_the_reference_ddsketch() -> None:
    rng = np.random.default_rng(7)
    xs = rng.lognormal(3.0, 1.0, 20_000)
    ours = QuantileSketch()
    ours.add_many(xs)
    reference = DDSketch(relative_accuracy=RELATIVE_ACCURACY)
    for x in xs:
        reference.add(float(x))
    for q in QUANTILES:
        assert abs(ours.quantile(q) - reference.get_quantile_value(q)) <= 1e-9 * reference.get_quantile_value(
            q
        )


@given(values)
def test_quantile_encoding_round_trips(xs: list[float]) -> None:
    sketch = QuantileSketch()
    sketch.add_many(xs)
    data = sketch.to_bytes()
    assert data[0] == 1
    assert QuantileSketch.from_bytes(data) == sketch


def test_empty_quantile_sketch_has_no_answer() -> None:
    assert QuantileSketch().quantile(0.5) is None


def test_distinct_count_within_two_percent_at_a_million() -> None:
    sketch = DistinctSketch()
    sketch.add_many(f"user-{i}" for i in range(1_000_000))
    assert abs(sketch.estimate() - 1_000_000) / 1_000_000 <= 0.02


def test_distinct_merge_of_overlapping_parts() -> None:
    parts = [DistinctSketch() for _ in range(4)]
    for i in range(200_000):
        parts[i % 4].add(str(i % 150_000))  # overlapping: 150,000 distinct in all
    merged = DistinctSketch()
    for part in parts:
        merged.merge(part)
    assert abs(merged.estimate() - 150_000) / 150_000 <= 0.02
    again = DistinctSketch.from_bytes(merged.to_bytes())
    assert again.estimate() == merged.estimate()


@given(st.sets(st.text(min_size=1, max_size=8), max_size=200))
def test_small_distinct_counts_are_exact(things: set[str]) -> None:
    sketch = DistinctSketch()
    for thing in things:
        sketch.add(thing)
        sketch.add(thing)
    assert round(sketch.estimate()) == len(things)


@given(values)
def test_adding_to_cells_equals_adding_one_by_one(xs: list[float]) -> None:
    from rtanalytics.core.sketches import add_to_cells

    cells = np.full(3, None, dtype=object)
    positions = np.arange(len(xs)) % 3
    add_to_cells(cells, positions, np.array(xs))
    for position in range(3):
        expected = QuantileSketch()
        for x in xs[position::3]:
            expected.add(x)
        from rtanalytics.core.sketches import cell_sketch

        assert cell_sketch(cells[position], distinct=False) == expected


def test_quantile_sketches_of_runs_equal_sketches_built_value_by_value() -> None:
    from rtanalytics.core.sketches import quantile_sketches

    values = np.array([0.0, 1.5, -2.0, 3.0, 1e-12, 250.0, -0.5, 7.0])
    bounds = [0, 3, 3, 6, 8]  # an empty run too
    built = quantile_sketches(values, bounds)
    for (a, b), sketch in zip(itertools.pairwise(bounds), built, strict=True):
        expected = QuantileSketch()
        for v in values[a:b].tolist():
            expected.add(v)
        assert sketch == expected


@given(st.lists(values, min_size=0, max_size=8))
def test_merged_at_once_equals_merging_one_by_one(parts: list[list[float]]) -> None:
    sketches = []
    for part in parts:
        sketch = QuantileSketch()
        sketch.add_many(part)
        sketches.append(sketch)
    one_by_one = QuantileSketch()
    for sketch in sketches:
        one_by_one.merge(sketch)
    assert QuantileSketch.merged(sketches) == one_by_one


@given(values, st.lists(st.floats(min_value=0, max_value=1), min_size=1, max_size=6))
def test_quantiles_at_once_equal_one_by_one(xs: list[float], qs: list[float]) -> None:
    sketch = QuantileSketch()
    sketch.add_many(xs)
    one_by_one = []
    for q in qs:  # the walk of quantile() before quantiles() existed, as the reference
        rank, seen, found = q * (sketch.count - 1), 0, None
        for value, n in [
            *(
                (-b, sketch.negative[k])
                for k, b in sorted(((k, _bin_value(k)) for k in sketch.negative), reverse=True)
            ),
            (0.0, sketch.zero),
            *((_bin_value(k), sketch.positive[k]) for k in sorted(sketch.positive)),
        ]:
            seen += n
            if seen > rank:
                found = value
                break
        if found is None:
            found = _bin_value(max(sketch.positive)) if sketch.positive else 0.0
        one_by_one.append(found)
    assert sketch.quantiles(qs) == one_by_one
    assert [sketch.quantile(q) for q in qs] == one_by_one


@given(values)
def test_add_many_of_few_or_many_values_counts_what_add_counts(xs: list[float]) -> None:
    """add_many adds a few values one by one and many with numpy: the same bins either way
    (the values drawn here are not on a bin's edge, where numpy's log may differ in the last bit)."""
    one_by_one = QuantileSketch()
    for x in xs:
        one_by_one.add(x)
    for given_as in (xs, np.array(xs)):
        at_once = QuantileSketch()
        at_once.add_many(given_as)
        assert (at_once.positive, at_once.negative, at_once.zero, at_once.count) == (
            one_by_one.positive,
            one_by_one.negative,
            one_by_one.zero,
            one_by_one.count,
        )


dense_stores = st.lists(
    st.one_of(
        st.just(b""),
        st.tuples(
            st.one_of(st.integers(-1_500, 1_500), st.integers(-40_000, 40_000)),
            st.lists(st.integers(0, 2**40), min_size=1, max_size=60),
        ).map(lambda low_counts: np.array([low_counts[0], *low_counts[1]], dtype=np.int64).tobytes()),
    ),
    max_size=8,
)


@given(dense_stores)
@example(
    [np.array([-39_999, 1], dtype=np.int64).tobytes(), np.array([25_537, 0, 3], dtype=np.int64).tobytes()]
)
def test_the_c_merge_of_dense_stores_equals_the_numpy_merge(stores: list[bytes]) -> None:
    """merge_dense (C) sums sketch sides as merge_dense_numpy does: the same low key and the same
    counts, bin for bin."""
    from rtanalytics.core import sketches

    if sketches._speedups is None:
        pytest.skip("the C speedup is not built here")
    sides = [bytearray(store) for store in stores]
    summed = sketches._speedups.merge_dense(sides)
    assert summed == sketches.merge_dense_numpy(sides)
    total = sum(int(np.frombuffer(store, dtype=np.int64)[1:].sum()) for store in stores if store)
    summed_total = int(np.frombuffer(summed, dtype=np.int64)[1:].sum()) if summed else 0
    assert summed_total == total


def test_the_c_merge_refuses_what_is_not_a_dense_store() -> None:
    from rtanalytics.core import sketches

    if sketches._speedups is None:
        pytest.skip("the C speedup is not built here")
    for bad in ([b"x" * 8], [bytearray(8)], [{1: 2}]):
        with pytest.raises(TypeError, match="dense store"):
            sketches._speedups.merge_dense(bad)


def test_merged_sketches_are_the_same_with_or_without_the_c_merge() -> None:
    rng = np.random.default_rng(5)
    parts = []
    for _ in range(60):
        sketch = QuantileSketch()
        sketch.add_many(np.concatenate([rng.lognormal(3, 1, 300), -rng.lognormal(1, 1, 20), [0.0]]))
        parts.append(sketch)
    from rtanalytics.core import sketches

    native = QuantileSketch.merged(parts)
    held, sketches._speedups = sketches._speedups, None
    try:
        reference = QuantileSketch.merged(parts)
    finally:
        sketches._speedups = held
    assert native == reference and list(native.positive) == list(reference.positive)
    assert native.count == sum(p.count for p in parts)
