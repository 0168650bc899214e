"""What the parser tests share: point dicts to parse, and a parse result in an order-free form."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from rtanalytics.core.metrics import MetricType, PointBatch, Rejection

NOW = 1_700_000_000.0


def point_dicts(
    anything: st.SearchStrategy[Any],
    *,
    names: list[str],
    values: st.SearchStrategy[Any],
    tag_keys: list[str],
    tag_values: st.SearchStrategy[Any],
    windows: list[str],
    extra: dict[str, st.SearchStrategy[Any]] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Point dicts whose every field may be missing, ordinary, or `anything` else."""
    return st.fixed_dictionaries(
        {},
        optional={
            "name": st.one_of(st.sampled_from(names), anything),
            "type": st.one_of(st.sampled_from([t.value for t in MetricType]), anything),
            "value": st.one_of(values, anything),
            "tags": st.one_of(
                st.dictionaries(st.sampled_from(tag_keys), tag_values, max_size=3),
                anything,
            ),
            "timestamp": st.one_of(
                st.floats(min_value=NOW - 40 * 86_400, max_value=NOW + 900),
                st.integers(min_value=int(NOW) - 100, max_value=int(NOW) + 100),
                st.just("2023-11-14T22:13:20Z"),
                anything,
            ),
            "window": st.one_of(st.sampled_from(windows), anything),
            **(extra or {}),
        },
    )


def canonical(batch: PointBatch, rejected: list[Rejection]) -> tuple:
    """Points sorted by position (every column), windows, and rejections sorted by position:
    the C paths append the points they leave to the Python parser after the others."""
    rows = sorted(zip(*batch.columns(), strict=True))
    return rows, batch.windows, sorted((r.index, r.problems) for r in rejected)


def check_float_columns(batch: PointBatch) -> None:
    """float_columns() holds, bit for bit, the batch's timestamps and numbers(), whether it read
    the C parsers' packed doubles or converted the lists."""
    import numpy as np

    ts, values = batch.float_columns()
    assert ts.tobytes() == np.array(batch.timestamps, dtype=np.float64).tobytes()
    assert values.tobytes() == batch.numbers().tobytes()
