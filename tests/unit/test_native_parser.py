"""The C speedup of parse_points gives exactly what the Python reference parser gives."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtanalytics.core import metrics
from rtanalytics.core.metrics import MAX_FUTURE_SECONDS, MetricType, PointBatch, parse_points
from tests.unit.parsed import NOW, canonical, check_float_columns, point_dicts

pytestmark = pytest.mark.skipif(metrics._speedups is None, reason="the C speedup is not built here")

anything = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=5),
    st.lists(st.integers(), max_size=2),
)
point = point_dicts(
    anything,
    names=["api.requests.count", "a", "b.c", "bad name", ""],
    values=st.one_of(st.floats(min_value=-1e6, max_value=1e6), st.integers(-1000, 10**20)),
    tag_keys=["endpoint", "status", "1bad"],
    tag_values=st.sampled_from(["/x", "200", "500"]),
    windows=["1m", "5m", "1500ms"],
)


@given(
    st.lists(st.one_of(point, anything), max_size=30),
    st.dictionaries(st.sampled_from(["a", "b.c"]), st.sampled_from(list(MetricType))),
)
def test_native_and_python_parsers_agree(points: list[Any], known: dict[str, MetricType]) -> None:
    oldest = NOW - 30 * 86_400
    python = parse_points(points, NOW, known_types=known, oldest=oldest, native=False)
    native = parse_points(points, NOW, known_types=known, oldest=oldest, native=True)
    assert canonical(*native) == canonical(*python)
    # and again, now that names and tag sets are cached as valid
    again = parse_points(points, NOW, known_types=known, oldest=oldest)
    assert canonical(*again) == canonical(*python)
    for batch in (python[0], native[0], again[0]):
        check_float_columns(batch)


def test_huge_integers_are_refused_not_crashed() -> None:
    batch, rejected = parse_points([{"name": "a", "type": "sum", "value": 10**400}], NOW)
    assert len(batch) == 0 and rejected[0].problems[0].field == "metrics[0].value"
    batch, rejected = parse_points([{"name": "a", "type": "sum", "value": 1, "timestamp": 10**400}], NOW)
    assert len(batch) == 0 and rejected[0].problems[0].field == "metrics[0].timestamp"


def test_an_unhashable_tag_value_is_a_rejection_not_a_crash() -> None:
    points = [{"name": "a", "type": "count", "value": 1, "tags": {"k": [1]}}]
    parse_points([{"name": "a", "type": "count", "value": 1}], NOW)  # `a` is now a known name
    batch, rejected = parse_points(points, NOW)
    assert len(batch) == 0 and rejected[0].problems[0].field == "metrics[0].tags.k"


def test_series_keys_tell_apart_tag_values_that_hold_separators() -> None:
    one = metrics.series_key("m", (("a", "1\x1fb=1:2"),))
    two = metrics.series_key("m", (("a", "1"), ("b", "2")))
    assert one != two


def test_series_whose_parts_run_together_stay_apart_once_learned() -> None:
    """The C parser remembers series by their name and tag strings, one by one: series that
    would read alike with their strings run together must stay apart."""
    tag_sets = [{"bc": "d"}, {"b": "cd"}, {"b": "c", "d": ""}, {"b": "c"}, {}, {"k": "ü"}, {"k": "u"}]
    points = [
        {"name": name, "type": "sum", "value": 1.0, "tags": tags}
        for name in ("run.a", "run.ab")
        for tags in tag_sets
    ]
    python = parse_points(points, NOW, native=False)
    size = metrics._speedups.series_table_size(metrics._DICT_TABLE)
    learned = parse_points(points, NOW)  # asks the Python parser's cache, then remembers them
    assert metrics._speedups.series_table_size(metrics._DICT_TABLE) == size + len(points)
    again = parse_points(points, NOW)  # found by the C table alone
    for native in (learned, again):
        assert canonical(*native) == canonical(*python)
    assert len(set(again[0].series)) == len(points)


def test_keys_made_at_run_time_and_other_keys_read_as_the_python_parser_reads_them() -> None:
    """The C parser finds a point's fields by one walk over its entries, by identity with the
    interned key literals first: keys built at run time (as a JSON decoder may) must be found
    by their text, `window` must still send a point to the Python parser, and other keys,
    strings or not, are ignored."""

    def fresh(text: str) -> str:
        return "".join(list(text))  # equal to the literal, but another object

    parse_points([{"name": "runtime.keys", "type": "sum", "value": 1.0, "tags": {"k": "v"}}], NOW)
    points: list[Any] = [
        {fresh("name"): "runtime.keys", fresh("type"): "sum", fresh("value"): 2.0, fresh("tags"): {"k": "v"}},
        {"name": "runtime.keys", "type": "sum", "value": 3.0, "tags": {"k": "v"}, fresh("window"): "5m"},
        {"name": "runtime.keys", "type": "sum", "value": 4.0, "tags": {"k": "v"}, "note": "x", 7: "seven"},
        {
            "name": "runtime.keys",
            "type": "sum",
            "value": 5.0,
            "tags": {"k": "v"},
            fresh("timestamp"): NOW - 1,
        },
        {
            "name": "runtime.keys",
            "type": "sum",
            "value": 6.0,
            "tags": {"k": "v"},
            "nam": "x",
            "valu\u0435": 1,
        },
    ]
    python = parse_points(points, NOW, native=False)
    native = parse_points(points, NOW)
    assert canonical(*native) == canonical(*python)
    assert len(native[0]) == 5 and native[0].windows == {"runtime.keys": 300_000}
    # and the C parser took every point itself but the one with a window
    args = (NOW, NOW + MAX_FUTURE_SECONDS, NOW - 86_400, metrics._DICT_TABLE, metrics._CACHE.series, {})
    types = (metrics._TYPES_BY_VALUE, MetricType.UNIQUE, MetricType.COUNT)
    assert metrics._speedups.fast_parse(points, *args, *types, *PointBatch().native_columns()) == [1]


def test_a_key_only_a_lookup_could_match_goes_to_the_python_parser() -> None:
    """A str subclass equal to "timestamp", or an object whose type says it equals "window",
    is found by a dict lookup, as the Python parser does: the C parser's walk over the entries
    must not skip them as other keys (the point would take the time of arrival, or lose its
    window), and leaves such points to the Python parser."""

    class Key(str):
        pass

    class Window:
        def __eq__(self, other: object) -> bool:
            return other == "window"

        def __hash__(self) -> int:
            return hash("window")

    parse_points([{"name": "runtime.odd", "type": "sum", "value": 1.0, "tags": {"k": "v"}}], NOW)
    points: list[Any] = [
        {"name": "runtime.odd", "type": "sum", "value": 2.0, "tags": {"k": "v"}, Key("timestamp"): NOW - 5},
        {"name": "runtime.odd", "type": "sum", "value": 3.0, "tags": {"k": "v"}, Window(): "5m"},
        {"name": "runtime.odd", "type": "sum", "value": 4.0, "tags": {"k": "v"}, 7: None, None: 1},
    ]
    python = parse_points(points, NOW, native=False)
    native = parse_points(points, NOW)
    assert canonical(*native) == canonical(*python)
    assert python[0].timestamps[0] == NOW - 5 and python[0].windows == {"runtime.odd": 300_000}
    args = (NOW, NOW + MAX_FUTURE_SECONDS, NOW - 86_400, metrics._DICT_TABLE, metrics._CACHE.series, {})
    types = (metrics._TYPES_BY_VALUE, MetricType.UNIQUE, MetricType.COUNT)
    assert metrics._speedups.fast_parse(points, *args, *types, *PointBatch().native_columns()) == [0, 1]


def test_a_batch_the_c_parser_took_whole_reads_its_packed_doubles() -> None:
    """Both C parsers pack each point's timestamp and value as doubles; the store reads those
    (float_columns) instead of converting the lists, and only when every point came from a C
    parser: a point the Python parser added leaves them short, and the lists are read."""
    points: list[Any] = [
        {"name": "packed.a", "type": "sum", "value": 1.5, "tags": {"k": "v"}, "timestamp": NOW - 1},
        {"name": "packed.a", "type": "sum", "value": 7, "tags": {"k": "v"}, "timestamp": int(NOW) - 2},
        {"name": "packed.b", "type": "count", "tags": {"k": "v"}},
    ]
    parse_points(points, NOW)  # the series are now known valid: the C parser takes them all
    for batch in (
        parse_points(points, NOW)[0],
        metrics.parse_json_points(orjson.dumps({"metrics": points}), NOW, max_points=10)[1],
    ):  # type: ignore[index]
        ts, values = batch.float_columns()
        assert ts.base.obj is batch.packed_ts and values.base.obj is batch.packed_values  # views of them
        assert ts.tolist() == [NOW - 1, int(NOW) - 2, NOW] and values.tolist() == [1.5, 7.0, 1.0]
    mixed = parse_points([*points, {"name": "packed.c", "type": "sum", "value": 2.0, "window": "5m"}], NOW)[0]
    assert len(mixed) == 4 and len(mixed.packed_ts) == 8 * 3  # the fourth came from the Python parser
    ts, values = mixed.float_columns()
    assert ts.base is None and values.tolist() == [1.5, 7.0, 1.0, 2.0]


def test_a_series_named_by_other_string_objects_is_the_same_record() -> None:
    """The C dict parser's table matches a series' strings by identity first and by text
    otherwise: equal strings that are other objects (as a JSON decoder makes) find the record
    the first point made, and are the same series; a tag value one character off is not."""

    def fresh(text: str) -> str:
        return "".join(list(text))

    point = {"name": "ids.m", "type": "sum", "value": 1.0, "tags": {"host": "h1", "dc": "x"}}
    parse_points([point], NOW)
    parse_points([point], NOW)  # learned
    size = metrics._speedups.series_table_size(metrics._DICT_TABLE)
    twin = {
        "name": fresh("ids.m"),
        "type": "sum",
        "value": 2.0,
        "tags": {fresh("host"): fresh("h1"), fresh("dc"): fresh("x")},
    }
    other = {"name": "ids.m", "type": "sum", "value": 3.0, "tags": {"host": fresh("h2"), "dc": "x"}}
    batch, rejected = parse_points([point, twin, other], NOW)
    # the twin found the first point's record (had it not, it would have learned a second one)
    assert not rejected and metrics._speedups.series_table_size(metrics._DICT_TABLE) == size
    assert batch.series[0] == batch.series[1] != batch.series[2]
    assert canonical(batch, rejected) == canonical(*parse_points([point, twin, other], NOW, native=False))


def test_a_type_other_than_the_registered_one_goes_to_the_python_parser_every_time() -> None:
    """The C parser remembers, for one call, each name's registered type: every point of
    another type is still left to the Python parser, which refuses it."""
    known = {"conf.m": MetricType.SUM}
    ok = {"name": "conf.m", "type": "sum", "value": 1.0, "tags": {"k": "v"}}
    other = {"name": "conf.m", "type": "count", "value": 1.0, "tags": {"k": "v"}}
    parse_points([ok], NOW, known_types=known)
    points: list[Any] = [ok, other, ok, other]
    native = parse_points(points, NOW, known_types=known)
    assert canonical(*native) == canonical(*parse_points(points, NOW, known_types=known, native=False))
    assert [r.index for r in native[1]] == [1, 3] and len(native[0]) == 2
    args = (NOW, NOW + MAX_FUTURE_SECONDS, NOW - 86_400, metrics._DICT_TABLE, metrics._CACHE.series, known)
    types = (metrics._TYPES_BY_VALUE, MetricType.UNIQUE, MetricType.COUNT)
    assert metrics._speedups.fast_parse(points, *args, *types, *PointBatch().native_columns()) == [1, 3]


@given(st.lists(st.integers(0, 400), max_size=2000), st.integers(1, 400))
def test_distinct_is_frozenset(picks: list[int], pool: int) -> None:
    """distinct() remembers objects by address in a small table; past its room, and for equal
    strings that are other objects, the set itself must still fold them."""
    shared = [f"name.{k}" for k in range(pool)]
    items = [shared[k % pool] if k % 3 else f"name.{k % pool}" for k in picks]  # 1 in 3 a fresh object
    assert metrics._speedups.distinct(items) == frozenset(items)


def test_distinct_past_its_table() -> None:
    """More distinct objects than the table has slots: the rest still reach the set."""
    items = [f"name.{k}" for k in range(1000)] * 2
    assert metrics._speedups.distinct(items) == frozenset(items)


def test_distinct_refuses_what_frozenset_refuses() -> None:
    with pytest.raises(TypeError):
        metrics._speedups.distinct([["not hashable"]])
    with pytest.raises(TypeError):
        metrics._speedups.distinct(("a", "b"))


def test_json_parser_names_are_one_object_per_metric() -> None:
    """Every series of a metric the JSON parser knows shares one name object (interned), so a
    batch's names are a few objects that stay in the cache."""
    body = orjson.dumps(
        {"metrics": [{"name": "one.metric", "type": "count", "tags": {"k": str(i)}} for i in range(20)]}
    )
    metrics.parse_json_points(body, NOW, max_points=100)  # the Python parser sees them valid first
    parsed = metrics.parse_json_points(body, NOW, max_points=100)
    assert parsed is not None
    names = parsed[1].names
    assert len(names) == 20 and len({id(n) for n in names}) == 1
    assert parsed[1].name_set() == frozenset({"one.metric"})
