"""parse_json_points, which reads request bodies straight from their bytes, answers exactly what
orjson followed by the Python parser answers, or steps aside (None) for bodies it does not take."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from rtanalytics.core import metrics
from rtanalytics.core.metrics import MetricType, parse_json_points, parse_points
from tests.unit.parsed import NOW, canonical, check_float_columns, point_dicts

pytestmark = pytest.mark.skipif(metrics._speedups is None, reason="the C speedup is not built here")

OLDEST = NOW - 30 * 86_400

json_scalar = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**64 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=5),
)
json_any = st.recursive(
    json_scalar,
    lambda inner: st.one_of(
        st.lists(inner, max_size=2), st.dictionaries(st.text(max_size=3), inner, max_size=2)
    ),
    max_leaves=4,
)
point = point_dicts(
    json_any,
    names=["api.requests.count", "a", "b.c", "bad name", "é"],
    values=st.one_of(
        st.floats(min_value=-1e6, max_value=1e6),
        st.integers(-1000, 2**63),
        st.sampled_from([0.1, 1e-7, 123456789.123456789, 2.5e21, -0.0, 1e300]),
    ),
    tag_keys=["endpoint", "status", "1bad", "ünï"],
    tag_values=st.one_of(st.sampled_from(["/x", "200", "500", 'q"uote', "tab\t"]), json_any),
    windows=["1m", "5m"],
    extra={"unit": json_any},
)
LAYOUTS = [
    lambda body: orjson.dumps(body),
    lambda body: json.dumps(body).encode(),  # ", " and ": ", \\u escapes for non-ASCII
    lambda body: json.dumps(body, indent=1, ensure_ascii=False).encode(),
    lambda body: json.dumps(body, separators=(" ,\\r\\n", "\\t: ")).encode(),
]


def check(body: bytes, known: dict[str, MetricType], max_points: int = 10_000) -> None:
    """Whatever parse_json_points takes, it answers as orjson + parse_points do."""
    try:
        decoded: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        decoded = None
    plain = (
        isinstance(decoded, dict) and list(decoded) == ["metrics"] and isinstance(decoded["metrics"], list)
    )
    reference = None
    if plain:  # the Python parser first: it is what teaches the C table the valid series
        points = decoded["metrics"]
        reference = canonical(
            *parse_points(points[:max_points], NOW, known_types=known, oldest=OLDEST, native=False)
        )
    for _ in range(2):  # a miss, then (for valid series) a hit in the C table
        found = parse_json_points(body, NOW, known_types=known, oldest=OLDEST, max_points=max_points)
        if not plain:
            assert found is None
            continue
        assert found is not None
        count, batch, rejected = found
        assert count == len(decoded["metrics"])
        assert canonical(batch, rejected) == reference
        check_float_columns(batch)


@given(
    st.lists(st.one_of(point, json_any), max_size=12),
    st.dictionaries(st.sampled_from(["a", "b.c"]), st.sampled_from(list(MetricType))),
    st.sampled_from(range(len(LAYOUTS))),
)
def test_json_bytes_parse_as_orjson_and_the_python_parser_do(
    points: list[Any], known: dict, layout: int
) -> None:
    check(LAYOUTS[layout]({"metrics": points}), known)


@pytest.mark.parametrize(
    "body",
    [
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1, "value": 2}]}',  # a repeated key: the last counts
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1, "tags": {"k": "1", "k": "2"}}]}',
        b'{"metrics": [{"name": "a", "type": "sum", "value": -0}, {"name": "a", "type": "sum", "value": -0.0}]}',
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1e400}]}',  # orjson refuses infinity
        b'{"metrics": [{"name": "a", "type": "sum", "value": 123456789012345678901234}]}',
        b'{"metrics": [{"name": "a", "type": "sum", "value": 0.1e1, "timestamp": 1700000000E0}]}',
        b'{"metrics": [{"name": "a", "type": "sum", "value": 01}]}',
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1.}]}',
        b'{"metrics": [{"name": "\\u0061", "type": "sum", "value": 1}]}',
        b'{"metrics": [{"name": "a", "type": "count"}, {"name": "a", "type": "count", "value": null}]}',
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1, "tags": {"k": "\xff"}}]}',  # not UTF-8
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1, "tags": {"k": "a\x01"}}]}',  # raw control
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1},]}',
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1}]} x',
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1}], "other": 1}',
        b'{"metrics": []}',
        b'{"metrics": {}}',
        b'[{"name": "a", "type": "sum", "value": 1}]',
        b'{"metrics": [1, "x", null, [], {}]}',
        b'{"metrics": [{"name": "a", "type": "sum", "value": 1, "tags": {"k": [1]}}]}',
        b'{"metrics": [' + b"[" * 300 + b"]" * 300 + b"]}",
        b'{"metrics": [' + b"[" * 1050 + b"]" * 1050 + b"]}",  # past orjson's nesting limit
        b'{"metrics": [' + b"[" * 3000 + b"]" * 3000 + b"]}",
        b"",
        b"   ",
    ],
)
def test_bodies_at_the_edges(body: bytes) -> None:
    parse_points([{"name": "a", "type": "sum", "value": 1, "tags": {"k": "1"}}], NOW)  # `a` is known valid
    check(body, {})


def test_points_past_the_limit_are_counted_not_parsed() -> None:
    points = [{"name": "a", "type": "sum", "value": i} for i in range(5)]
    found = parse_json_points(orjson.dumps({"metrics": points}), NOW, max_points=3)
    assert found is not None
    count, batch, rejected = found
    assert count == 5 and batch.index == [0, 1, 2] and not rejected


def test_a_series_seen_valid_is_then_read_from_the_bytes_alone() -> None:
    table = metrics._SERIES_TABLE
    point = {"name": "learned.metric", "type": "sum", "value": 2.5, "tags": {"zone": "b", "host": "h1"}}
    body = orjson.dumps({"metrics": [point]})
    before = metrics._speedups.series_table_size(table)
    parse_points([point], NOW)  # the Python parser validates it once
    first = parse_json_points(body, NOW, max_points=10)
    assert metrics._speedups.series_table_size(table) == before + 1
    second = parse_json_points(body, NOW, max_points=10)
    assert metrics._speedups.series_table_size(table) == before + 1
    assert first is not None and second is not None
    assert canonical(*first[1:]) == canonical(*second[1:])
    assert second[1].tags == [(("host", "h1"), ("zone", "b"))]


long_text = st.text(alphabet=st.sampled_from('ab/.é\x7f "\\\x01\x1f\t'), max_size=70)


@given(long_text, st.sampled_from(["escaped", "raw"]), st.integers(min_value=0, max_value=40))
def test_strings_of_any_length_scan_as_orjson_reads_them(text: str, how: str, pad: int) -> None:
    """The scanner reads strings 16 bytes at a time: a quote, backslash or control character
    at any position of a long string, and strings ending in the body's last 16 bytes, read as
    orjson reads them (or the body is refused as orjson refuses it)."""
    value = json.dumps(text).encode() if how == "escaped" else b'"' + text.encode() + b'"'
    name = b'"' + b"n" * pad + b'"'
    check(
        b'{"metrics": [{"name": ' + name + b', "type": "sum", "value": 1, "tags": {"k": ' + value + b"}}]}",
        {},
    )
    check(b'{"metrics": [{"name": "a", "type": "sum", "value": 1, "tags": {"k": ' + value + b"}}]}", {})


def test_floats_of_the_points_it_took_come_first_then_the_python_parsers() -> None:
    """The C parser's points keep their floats packed until asked for; the points it leaves to
    the Python parser (here one with a window) are appended after them. Asked for, the columns
    line up point by point with the Python parser's."""
    fast = {"name": "deferred.metric", "type": "sum", "value": 1.5, "timestamp": NOW - 3, "tags": {"k": "v"}}
    slow = {"name": "deferred.metric", "type": "sum", "value": 7.25, "timestamp": NOW - 9, "window": "1m"}
    points = [fast, slow, {**fast, "value": 2.5, "timestamp": NOW - 1}]
    parse_points([fast], NOW)  # the Python parser sees the series valid: the C parser takes it next
    found = parse_json_points(orjson.dumps({"metrics": points}), NOW, max_points=10)
    assert found is not None
    _, batch, _ = found
    assert batch.index == [0, 2, 1]
    assert batch.timestamps == [NOW - 3, NOW - 1, NOW - 9]
    assert batch.values == [1.5, 2.5, 7.25]
    reference, _ = parse_points(points, NOW)
    assert canonical(batch, []) == canonical(reference, [])
    assert batch == batch.select([True, True, True]) and batch != batch.select([True, False, True])
