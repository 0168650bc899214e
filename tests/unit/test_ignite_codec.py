"""The Ignite block format: round trips, merge rules, and what a later release must still read."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from rtanalytics.adapters.ignite import codec
from rtanalytics.adapters.ignite.cells import Points, blocks_for_tier
from rtanalytics.core.metrics import StateKind
from rtanalytics.core.sketches import QuantileSketch
from rtanalytics.core.states import BucketState
from rtanalytics.core.windows import Tier


def test_a_version_1_sum_block_reads_from_its_documented_bytes() -> None:
    raw = (
        struct.pack("<BBI", 1, 0, 2)
        + np.array([7, 9], dtype="<i8").tobytes()
        + np.array([0, 3], dtype="<i4").tobytes()
        + np.array([[2.0, 5.0], [1.0, 4.0]], dtype="<f8").tobytes()
    )
    block = codec.decode(raw)
    assert block.kind == StateKind.SUM and block.sids.tolist() == [7, 9] and block.offsets.tolist() == [0, 3]
    assert block.field("sum").tolist() == [5.0, 4.0]
    assert codec.encode(block) == raw


def test_a_newer_format_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="format 2 is newer"):
        codec.decode(struct.pack("<BBI", 2, 0, 0))


def test_quantile_blocks_round_trip_and_merge_like_bucket_states() -> None:
    tier = Tier("raw", 1, 3600)
    now = 1_000.0
    a = Points(
        StateKind.QUANTILE,
        np.array([1, 1, 2]),
        np.array([10.2, 10.7, 11.0]),
        np.array([3.0, 1.0, 8.0]),
        None,
        now,
    )
    b = Points(StateKind.QUANTILE, np.array([1]), np.array([10.9]), np.array([2.0]), None, now)
    blocks_a = blocks_for_tier([a], tier, 30)
    blocks_b = blocks_for_tier([b], tier, 30)
    merged = codec.merge([codec.decode(codec.encode(blocks_a[0])), codec.decode(codec.encode(blocks_b[0]))])
    cell = next(
        i for i, (s, o) in enumerate(zip(merged.sids.tolist(), merged.offsets.tolist())) if (s, o) == (1, 10)
    )
    want = BucketState.of(StateKind.QUANTILE, [(10.2, 3.0), (10.7, 1.0), (10.9, 2.0)])
    for field in ("count", "sum", "min", "max", "last", "last_ts"):
        assert merged.field(field)[cell] == getattr(want, field)
    sketch = merged.sketches()[cell]
    assert isinstance(sketch, QuantileSketch) and sketch == want.sketch


def test_series_ids_do_not_confuse_a_tag_value_with_more_tags() -> None:
    from rtanalytics.adapters.ignite.metric_store import series_id

    # as text "name US a=x US b=y", these two were one id (their points would have merged)
    one = series_id("m", (("a", "x\x1fb=y"),))
    two = series_id("m", (("a", "x"), ("b", "y")))
    assert one != two
    assert series_id("m", (("a", "x"), ("b", "y"))) == two  # the same in every process
