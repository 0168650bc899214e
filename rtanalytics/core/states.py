"""Bucket states: what is kept per bucket, how states merge, and what each aggregation reads.

`BucketState` is one bucket as a value, for the library and for encoding. `Partials` is the same
algebra over a (groups x slots) grid of numpy arrays, which is how stores hand back aggregates.
Both merge by the same rules: counts and sums add, min and max fold, `last` is the value with the
latest timestamp (ties: the larger value), sketches merge.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from rtanalytics.core.metrics import KIND_OF_TYPE, MetricType, StateKind
from rtanalytics.core.sketches import DistinctSketch, QuantileSketch

FIELDS: dict[StateKind, tuple[str, ...]] = {
    StateKind.SUM: ("count", "sum"),
    StateKind.FULL: ("count", "sum", "min", "max", "last", "last_ts"),
    StateKind.QUANTILE: ("count", "sum", "min", "max", "last", "last_ts"),
    StateKind.DISTINCT: ("count",),
}
EMPTY: dict[str, float] = {
    "count": 0.0,
    "sum": 0.0,
    "min": math.inf,
    "max": -math.inf,
    "last": -math.inf,
    "last_ts": -math.inf,
}
HAS_SKETCH = {StateKind.QUANTILE, StateKind.DISTINCT}

PERCENTILE_NAMES = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0, "p999": 99.9}
DEFAULT_PERCENTILES = (50.0, 95.0, 99.0)
AGGREGATIONS = (
    "count",
    "sum",
    "avg",
    "average",
    "min",
    "max",
    "last",
    "rate",
    "unique",
    "percentile",
    *PERCENTILE_NAMES,
)
_NEEDS: dict[str, set[StateKind]] = {
    "count": set(StateKind),
    "sum": {StateKind.SUM, StateKind.FULL, StateKind.QUANTILE},
    "avg": {StateKind.SUM, StateKind.FULL, StateKind.QUANTILE},
    "rate": {StateKind.SUM, StateKind.FULL, StateKind.QUANTILE},
    "min": {StateKind.FULL, StateKind.QUANTILE},
    "max": {StateKind.FULL, StateKind.QUANTILE},
    "last": {StateKind.FULL, StateKind.QUANTILE},
    "unique": {StateKind.DISTINCT},
    "percentile": {StateKind.QUANTILE},
}
DEFAULT_AGGREGATION: dict[MetricType, str] = {
    MetricType.COUNT: "sum",
    MetricType.SUM: "sum",
    MetricType.AVERAGE: "avg",
    MetricType.MIN: "min",
    MetricType.MAX: "max",
    MetricType.PERCENTILE: "percentile",
    MetricType.RATE: "rate",
    MetricType.UNIQUE: "unique",
}


def canonical_aggregation(name: str) -> str:
    """`average` is `avg`; everything else is itself."""
    return "avg" if name == "average" else name


def supports(kind: StateKind, aggregation: str) -> bool:
    """Whether a bucket of this kind keeps what the aggregation reads."""
    agg = canonical_aggregation(aggregation)
    need = _NEEDS["percentile"] if agg in PERCENTILE_NAMES else _NEEDS[agg]
    return kind in need


def supported_aggregations(mtype: MetricType) -> list[str]:
    kind = KIND_OF_TYPE[mtype]
    return [a for a in AGGREGATIONS if a != "average" and supports(kind, a)]


def fields_read(aggregation: str) -> frozenset[str]:
    """The bucket fields (and "sketch") an aggregation reads; stores may skip the rest."""
    agg = canonical_aggregation(aggregation)
    if agg in ("sum", "avg", "rate"):
        return frozenset({"count", "sum"})
    if agg in ("min", "max"):
        return frozenset({"count", agg})
    if agg == "last":
        return frozenset({"count", "last", "last_ts"})
    if agg == "count":
        return frozenset({"count"})
    return frozenset({"count", "sketch"})  # unique, percentile, pNN


def percentile_key(p: float) -> str:
    """50 -> 'p50', 99.9 -> 'p999'."""
    text = f"{p:g}".replace(".", "")
    return f"p{text}"


@attrs.frozen
class BucketState:
    """One bucket of one series; which fields matter depends on `kind`."""

    kind: StateKind
    count: float = 0.0
    sum: float = 0.0
    min: float = math.inf
    max: float = -math.inf
    last: float = -math.inf
    last_ts: float = -math.inf
    sketch: QuantileSketch | DistinctSketch | None = attrs.field(default=None, eq=False)

    @classmethod
    def of(cls, kind: StateKind, points: Iterable[tuple[float, Any]]) -> BucketState:
        """The state of a bucket holding these (timestamp, value) points."""
        state = cls(kind)
        for ts, value in points:
            state = state.merge(cls.single(kind, ts, value))
        return state

    @classmethod
    def single(cls, kind: StateKind, ts: float, value: Any) -> BucketState:
        if kind is StateKind.DISTINCT:
            sketch = DistinctSketch()
            sketch.add(str(value))
            return cls(kind, count=1.0, sketch=sketch)
        quantiles = None
        if kind is StateKind.QUANTILE:
            quantiles = QuantileSketch()
            quantiles.add(float(value))
        v = float(value)
        return cls(kind, 1.0, v, v, v, v, ts, quantiles)

    def merge(self, other: BucketState) -> BucketState:
        """The state of both buckets together; associative and commutative."""
        if (self.last_ts, self.last) >= (other.last_ts, other.last):
            last, last_ts = self.last, self.last_ts
        else:
            last, last_ts = other.last, other.last_ts
        sketch = _merge_sketches(self.sketch, other.sketch)
        return BucketState(
            self.kind,
            self.count + other.count,
            self.sum + other.sum,
            min(self.min, other.min),
            max(self.max, other.max),
            last,
            last_ts,
            sketch,
        )


def _merge_sketches(a: Any, b: Any) -> Any:
    if a is None:
        return b.copy() if b is not None else None
    out = a.copy()
    if b is not None:
        out.merge(b)
    return out


class Partials:
    """Bucket states over a grid of (groups x slots), merged field by field with numpy."""

    __slots__ = ("fields", "kind", "sketches")

    def __init__(self, kind: StateKind, groups: int, slots: int) -> None:
        self.kind = kind
        self.fields: dict[str, np.ndarray] = {
            name: np.full((groups, slots), EMPTY[name], dtype=np.float64) for name in FIELDS[kind]
        }
        self.sketches: np.ndarray | None = (
            np.full((groups, slots), None, dtype=object) if kind in HAS_SKETCH else None
        )

    @property
    def shape(self) -> tuple[int, int]:
        return self.fields["count"].shape

    def merge(self, other: Partials) -> None:
        """Fold another grid of the same shape into this one."""
        f, g = self.fields, other.fields
        f["count"] += g["count"]
        if "sum" in f:
            f["sum"] += g["sum"]
        if "min" in f:
            np.minimum(f["min"], g["min"], out=f["min"])
            np.maximum(f["max"], g["max"], out=f["max"])
            take = (g["last_ts"] > f["last_ts"]) | ((g["last_ts"] == f["last_ts"]) & (g["last"] > f["last"]))
            f["last"][take] = g["last"][take]
            f["last_ts"][take] = g["last_ts"][take]
        if self.sketches is not None and other.sketches is not None:
            for idx, sketch in np.ndenumerate(other.sketches):
                if sketch is not None:
                    mine: Any = self.sketches[idx]
                    if mine is None:
                        self.sketches[idx] = sketch.copy()
                    else:
                        mine.merge(sketch)

    def take(self, groups: Sequence[int]) -> Partials:
        """The grid with its groups (rows) in this order."""
        out = Partials.__new__(Partials)
        out.kind = self.kind
        out.fields = {name: array[groups] for name, array in self.fields.items()}
        out.sketches = self.sketches[groups] if self.sketches is not None else None
        return out

    def present(self) -> np.ndarray:
        """Cells that hold at least one point."""
        return self.fields["count"] > 0

    def values(self, aggregation: str, window_s: float, percentiles: Sequence[float]) -> list[list[Any]]:
        """The aggregation's value in every cell, as (groups x slots) lists; absent cells are None."""
        agg = canonical_aggregation(aggregation)
        f = self.fields
        present = self.present()
        if agg in ("unique", "percentile") or agg in PERCENTILE_NAMES:
            assert self.sketches is not None
            out: list[list[Any]] = [[None] * present.shape[1] for _ in range(present.shape[0])]
            wanted = [PERCENTILE_NAMES[agg]] if agg in PERCENTILE_NAMES else list(percentiles)
            for g, s in zip(*np.nonzero(present)):
                sketch = self.sketches[g, s]
                if agg == "unique":
                    out[g][s] = round(sketch.estimate())
                    continue
                answer = dict(
                    zip((percentile_key(p) for p in wanted), sketch.quantiles([p / 100.0 for p in wanted]))
                )
                out[g][s] = answer[agg] if agg in PERCENTILE_NAMES else answer
            return out
        if agg == "count":
            numbers = f["count"]
        elif agg == "sum":
            numbers = f["sum"]
        elif agg == "avg":
            with np.errstate(invalid="ignore", divide="ignore"):
                numbers = f["sum"] / f["count"]
        elif agg == "rate":
            numbers = f["sum"] / window_s
        else:  # min, max, last
            numbers = f[agg]
        out = numbers.tolist()
        for g, s in zip(*np.nonzero(~present)):
            out[g][s] = None
        return out
