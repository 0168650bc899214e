"""The JSON wire format's dump: plain orjson, and its non-string-key option only when needed."""

from __future__ import annotations

from rtanalytics.core.results import QueryMeta, QueryResult, ResultRow
from rtanalytics.entrypoints.http.wire import dumps


def test_a_query_result_dumps_as_the_spec_spells_it() -> None:
    result = QueryResult(
        (ResultRow("m", {"host": "h1", "zone": None}, "avg", 1.5, window_ms=300_000),),
        QueryMeta(resolution_ms=1_000, series=1, points=3, took_ms=0.1),
    )
    assert dumps(result) == (
        b'{"results":[{"metric":"m","group":{"host":"h1","zone":null},"aggregation":"avg",'
        b'"window":"5m","value":1.5}],"meta":{"resolution":"1s","series":1,"points":3,"took_ms":0.1}}'
    )


def test_keys_that_are_not_strings_are_still_spelled() -> None:
    assert dumps({1: "a", 2.5: "b"}) == b'{"1":"a","2.5":"b"}'
