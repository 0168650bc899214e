"""The metric model: types, what each keeps per bucket, and validation of incoming points.

`parse_points` is the ingest hot path. It turns the seed's JSON point dicts into a columnar
`PointBatch` plus a list of rejections, collecting every problem of a point, not just the first.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any, cast

import attrs
import numpy as np
import orjson

from rtanalytics.core.durations import parse_duration, parse_timestamp
from rtanalytics.core.errors import Problem, ValidationError

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,199}$"
TAG_KEY_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
MAX_TAGS = 32
MAX_TAG_VALUE_CHARS = 256
MAX_FUTURE_SECONDS = 600.0
DEFAULT_WINDOW_MS = 60_000

try:  # the optional C speedup of parse_points (setup.py); the Python parser is the reference
    from rtanalytics.core import _speedups  # type: ignore[attr-defined]
except ImportError:  # pragma: no cover - depends on the build
    _speedups = None

_NAME_RE = re.compile(NAME_PATTERN)
_TAG_KEY_RE = re.compile(TAG_KEY_PATTERN)

Tags = tuple[tuple[str, str], ...]


class MetricType(StrEnum):
    COUNT = "count"
    SUM = "sum"
    AVERAGE = "average"
    MIN = "min"
    MAX = "max"
    PERCENTILE = "percentile"
    RATE = "rate"
    UNIQUE = "unique"


class StateKind(StrEnum):
    """Which fields a bucket keeps; several metric types share one kind."""

    SUM = "sum"  # count, sum
    FULL = "full"  # count, sum, min, max, last (+ its timestamp)
    QUANTILE = "quantile"  # FULL + a quantile sketch
    DISTINCT = "distinct"  # count + a distinct-count sketch


KIND_OF_TYPE: dict[MetricType, StateKind] = {
    MetricType.COUNT: StateKind.SUM,
    MetricType.SUM: StateKind.SUM,
    MetricType.RATE: StateKind.SUM,
    MetricType.AVERAGE: StateKind.FULL,
    MetricType.MIN: StateKind.FULL,
    MetricType.MAX: StateKind.FULL,
    MetricType.PERCENTILE: StateKind.QUANTILE,
    MetricType.UNIQUE: StateKind.DISTINCT,
}

_TYPES_BY_VALUE = {t.value: t for t in MetricType}


@attrs.frozen
class SeriesKey:
    """A series: one metric name with one exact set of tags, inside one tenant."""

    tenant: str
    name: str
    tags: Tags


@attrs.frozen
class MetricInfo:
    """What the service knows of a metric name: its type (fixed by the first point) and window."""

    name: str
    type: MetricType
    window_ms: int = DEFAULT_WINDOW_MS


@attrs.define(slots=True, eq=False)
class PointBatch:
    """Validated points, column by column; `index` is each point's position in the request.

    `timestamps` and `values` of the points the C JSON parser took are made from its packed
    doubles when first asked for (the first `_deferred` points): the store reads the packed
    doubles, and making 2,000 float objects a batch that nothing reads was ~7 % of
    `Engine.ingest_json`."""

    index: list[int] = attrs.field(factory=list)
    names: list[str] = attrs.field(factory=list)
    types: list[MetricType] = attrs.field(factory=list)
    tags: list[Tags] = attrs.field(factory=list)
    series: list[str] = attrs.field(factory=list)  # series_key(name, tags) of each point
    _timestamps: list[float] = attrs.field(factory=list, alias="timestamps")
    _values: list[Any] = attrs.field(factory=list, alias="values")  # float, or str for `unique`
    windows: dict[str, int] = attrs.field(factory=dict)  # name -> window_ms given in this batch
    # The C parsers' copy of each timestamp and value as packed doubles (see float_columns)
    packed_ts: bytearray = attrs.field(factory=bytearray, repr=False)
    packed_values: bytearray = attrs.field(factory=bytearray, repr=False)
    _deferred: int = attrs.field(default=0, repr=False, init=False)

    def __len__(self) -> int:
        return len(self.names)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PointBatch):
            return NotImplemented
        return self.columns() == other.columns() and self.windows == other.windows

    @property
    def timestamps(self) -> list[float]:
        self._make_floats()
        return self._timestamps

    @property
    def values(self) -> list[Any]:
        self._make_floats()
        return self._values

    def defer_floats(self, count: int) -> None:
        """The first `count` points' timestamps and values are in the packed columns only."""
        assert not self._deferred and not self._timestamps and len(self.packed_ts) >= 8 * count
        self._deferred = count

    def _make_floats(self) -> None:
        # Inserted in front: the deferred points came first. (add() asks for the columns, so the
        # Python parser's points are in fact appended after this has run.)
        if self._deferred:
            count, self._deferred = self._deferred, 0
            self._timestamps[:0] = np.frombuffer(self.packed_ts, count=count).tolist()
            self._values[:0] = np.frombuffer(self.packed_values, count=count).tolist()

    def columns(
        self,
    ) -> tuple[list[int], list[str], list[MetricType], list[Tags], list[str], list[float], list[Any]]:
        """The per-point columns, in the order the C parsers fill them."""
        return self.index, self.names, self.types, self.tags, self.series, self.timestamps, self.values

    def native_columns(
        self,
    ) -> tuple[
        list[int],
        list[str],
        list[MetricType],
        list[Tags],
        list[str],
        list[float],
        list[Any],
        bytearray,
        bytearray,
    ]:
        """columns() and the packed doubles, the arguments the C parsers fill."""
        return (*self.columns(), self.packed_ts, self.packed_values)

    def float_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Timestamps and numbers() as float64 arrays. When a C parser took every point, these
        are the doubles it read, packed as it went (converting the two lists of 1,000 floats
        was ~4 % of HTTP ingest); a point added any other way leaves the packed columns short,
        and the lists are converted."""
        n = len(self.names)
        if n and len(self.packed_ts) == 8 * n and len(self.packed_values) == 8 * n:
            return np.frombuffer(self.packed_ts), np.frombuffer(self.packed_values)
        return np.fromiter(self.timestamps, dtype=np.float64, count=n), self.numbers()

    def name_set(self) -> frozenset[str]:
        """The distinct metric names (the C speedup looks at each name object once, not every point's)."""
        if _speedups is not None:
            return cast(frozenset[str], _speedups.distinct(self.names))
        return frozenset(self.names)

    def numbers(self) -> np.ndarray:
        """Each point's value as float64; a `unique` point's identity (text) reads 0."""
        if MetricType.UNIQUE in self.types:
            return np.array([v if type(v) is float else 0.0 for v in self.values], dtype=np.float64)
        return np.fromiter(self.values, dtype=np.float64, count=len(self.values))  # ~25% faster than np.array

    def add(self, index: int, name: str, mtype: MetricType, tags: Tags, timestamp: float, value: Any) -> None:
        """One more point, already valid (tags sorted by key)."""
        point = (index, name, mtype, tags, series_key(name, tags), timestamp, value)
        columns: tuple[list[Any], ...] = self.columns()
        for column, item in zip(columns, point):
            column.append(item)

    def select(self, keep: Sequence[bool]) -> PointBatch:
        """The points whose flag is true, in order."""
        out = PointBatch(windows=self.windows)
        columns: tuple[list[Any], ...] = self.columns()
        out_columns: tuple[list[Any], ...] = out.columns()
        for column, kept in zip(columns, out_columns):
            kept.extend(item for item, ok in zip(column, keep) if ok)
        return out


@attrs.frozen
class Rejection:
    """A point that was not accepted, with every reason."""

    index: int
    problems: tuple[Problem, ...]

    @property
    def message(self) -> str:
        return "; ".join(str(p) for p in self.problems)


def series_key(name: str, tags: Tags) -> str:
    """A series' identity as one string, which caches its hash: the name, then each tag as
    US key=length:value. Names and tag keys cannot hold US or `=`, and the length prefix keeps a
    value that does from reading as another tag."""
    return name + "".join(f"\x1f{k}={len(v)}:{v}" for k, v in tags)


def unique_identity(value: object) -> str:
    """The canonical text of a `unique` value, so 42, 42.0 and "42" count as one thing."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


class _ValidatedCache:
    """Names and tag sets already seen valid; bounded so hostile input cannot grow it forever."""

    __slots__ = ("names", "series", "tags")

    LIMIT = 200_000

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.tags: dict[tuple[tuple[str, Any], ...], Tags] = {}
        # (name, tag key, tag value, ...) as a client sent them -> (canonical tags, series key)
        self.series: dict[tuple[Any, ...], tuple[Tags, str]] = {}

    def trim(self) -> None:
        if len(self.names) > self.LIMIT:
            self.names.clear()
        if len(self.tags) > self.LIMIT:
            self.tags.clear()
        if len(self.series) > self.LIMIT:
            self.series.clear()


_CACHE = _ValidatedCache()


def _check_tags(raw: object, field: str, problems: list[Problem]) -> Tags:
    if not isinstance(raw, dict):
        problems.append(Problem(field, f"must be an object of string to string, got {type(raw).__name__}"))
        return ()
    start = len(problems)
    if len(raw) > MAX_TAGS:
        problems.append(Problem(field, f"has {len(raw)} tags, at most {MAX_TAGS} are allowed"))
    for key, value in raw.items():
        if not isinstance(key, str) or _TAG_KEY_RE.match(key) is None:
            problems.append(Problem(f"{field}.{key}", f"tag key must match {TAG_KEY_PATTERN}"))
        if not isinstance(value, str):
            problems.append(
                Problem(f"{field}.{key}", f"tag value must be a string, got {type(value).__name__}")
            )
        elif len(value) > MAX_TAG_VALUE_CHARS:
            problems.append(
                Problem(
                    f"{field}.{key}", f"tag value has {len(value)} characters, at most {MAX_TAG_VALUE_CHARS}"
                )
            )
    if len(problems) > start:
        return ()
    as_given = tuple(raw.items())
    items = tuple(sorted(as_given))
    # Keyed by the order the client sent too, so the next identical dict needs no sort.
    _CACHE.tags[as_given] = items
    _CACHE.tags[items] = items
    return items


def _parse_python(
    raw_points: Sequence[Any],
    now: float,
    known_types: Mapping[str, MetricType] | None,
    oldest: float,
    batch: PointBatch,
    positions: Sequence[int] | None = None,
) -> list[Rejection]:
    """The reference parser; `positions` are the points' places in the request when these are
    only some of its points."""
    rejected: list[Rejection] = []
    names_ok = _CACHE.names
    tags_cache = _CACHE.tags
    series_cache = _CACHE.series
    known = known_types if known_types is not None else {}
    latest = now + MAX_FUTURE_SECONDS
    types_by_value = _TYPES_BY_VALUE
    unique_type = MetricType.UNIQUE
    count_type = MetricType.COUNT
    isfinite = math.isfinite
    out_index, out_names, out_types, out_tags, out_series, out_ts, out_values = batch.columns()
    numbered = enumerate(raw_points) if positions is None else zip(positions, raw_points)
    for i, point in numbered:
        if type(point) is not dict:
            rejected.append(Rejection(i, (Problem(f"metrics[{i}]", "must be an object"),)))
            continue
        problems: list[Problem] = []
        name = point.get("name")
        if type(name) is not str or name not in names_ok:
            if type(name) is not str or _NAME_RE.match(name) is None:
                name = None
                problems.append(Problem(f"metrics[{i}].name", f"is required and must match {NAME_PATTERN}"))
            else:
                names_ok.add(name)
        raw_type = point.get("type")
        mtype = types_by_value.get(raw_type) if type(raw_type) is str else None
        if mtype is None:
            problems.append(Problem(f"metrics[{i}].type", f"must be one of {', '.join(types_by_value)}"))
        else:
            held = known.get(name) if name is not None else None
            if held is not None and held is not mtype:
                problems.append(
                    Problem(
                        f"metrics[{i}].type",
                        f"metric {name!r} is of type {held.value}; a point of type {mtype.value} is refused",
                    )
                )
        value = point.get("value")
        vtype = type(value)
        if vtype is int:
            if mtype is unique_type:
                value, vtype = str(value), str  # an integer id as written: no float rounding
            else:
                try:
                    value = float(value)  # type: ignore[arg-type]
                except OverflowError:
                    value = math.inf
                vtype = float
        if vtype is float:
            if not isfinite(value):  # type: ignore[arg-type]
                problems.append(
                    Problem(f"metrics[{i}].value", "must be a finite number, not NaN or Infinity")
                )
            elif mtype is unique_type:
                value = unique_identity(value)
        elif value is None and mtype is count_type:
            value = 1.0
        elif mtype is unique_type and vtype is str and value:
            pass  # an identity: a non-empty string, or a number made canonical above
        elif mtype is unique_type:
            problems.append(Problem(f"metrics[{i}].value", "must be a non-empty string or a finite number"))
        else:
            problems.append(Problem(f"metrics[{i}].value", f"must be a finite number, got {vtype.__name__}"))
        raw_tags = point.get("tags")
        if raw_tags is None:
            tags: Tags = ()
        elif type(raw_tags) is dict:
            try:
                cached = tags_cache.get(tuple(raw_tags.items()))
            except TypeError:  # an unhashable tag value: _check_tags says what is wrong
                cached = None
            tags = cached if cached is not None else _check_tags(raw_tags, f"metrics[{i}].tags", problems)
        else:
            tags = _check_tags(raw_tags, f"metrics[{i}].tags", problems)
        raw_ts = point.get("timestamp")
        ttype = type(raw_ts)
        if raw_ts is None:
            ts = now
        elif ttype is float or ttype is int:
            try:
                ts = float(raw_ts)
            except OverflowError:
                ts = math.inf
            if not isfinite(ts):
                problems.append(
                    Problem(f"metrics[{i}].timestamp", "must be a finite number of epoch seconds")
                )
        else:
            try:
                ts = parse_timestamp(raw_ts)
            except ValueError as exc:
                problems.append(Problem(f"metrics[{i}].timestamp", str(exc)))
                ts = now
        if ts > latest:
            problems.append(
                Problem(
                    f"metrics[{i}].timestamp",
                    f"is {ts - now:.0f}s in the future; at most {MAX_FUTURE_SECONDS:.0f}s is accepted",
                )
            )
        elif ts < oldest:
            problems.append(Problem(f"metrics[{i}].timestamp", "is older than the longest retention"))
        if "window" in point:
            _check_window(point["window"], name, i, problems, batch.windows)
        if problems:
            rejected.append(Rejection(i, tuple(problems)))
            continue
        flat = (name, *itertools.chain.from_iterable(raw_tags.items())) if raw_tags else (name,)
        entry = series_cache.get(flat)
        if entry is None:
            entry = series_cache[flat] = (tags, series_key(name, tags))  # type: ignore[arg-type]
        out_index.append(i)
        out_names.append(name)  # type: ignore[arg-type]
        out_types.append(mtype)  # type: ignore[arg-type]
        out_tags.append(entry[0])
        out_series.append(entry[1])
        out_ts.append(ts)
        out_values.append(value)
    return rejected


# Series already seen valid, for the C parsers: one table for point dicts (keyed by their name
# and tag strings), one for JSON bodies (keyed by the bytes of the name and tags object).
_DICT_TABLE = _speedups.dict_series_table() if _speedups is not None else None
_SERIES_TABLE = _speedups.series_table() if _speedups is not None else None


def parse_points(
    raw_points: Sequence[Any],
    now: float,
    *,
    known_types: Mapping[str, MetricType] | None = None,
    oldest: float = -math.inf,
    native: bool = True,
) -> tuple[PointBatch, list[Rejection]]:
    """Validate the seed's point dicts; the valid ones come back as a batch, the rest as rejections.

    `known_types` (name -> type already registered) refuses type conflicts, and `oldest` points
    older than every retention, in the same pass. This is the ingest hot path: the C speedup
    (when built) takes the ordinary points and hands the rest to the Python parser; problem
    texts are only built for points that have one. `native=False` forces pure Python.
    """
    batch = PointBatch()
    if native and _speedups is not None and type(raw_points) is list:
        slow = _speedups.fast_parse(
            raw_points,
            now,
            now + MAX_FUTURE_SECONDS,
            oldest,
            _DICT_TABLE,
            _CACHE.series,
            known_types if known_types is not None else {},
            _TYPES_BY_VALUE,
            MetricType.UNIQUE,
            MetricType.COUNT,
            *batch.native_columns(),
        )
        rejected = (
            _parse_python([raw_points[i] for i in slow], now, known_types, oldest, batch, slow)
            if slow
            else []
        )
    else:
        rejected = _parse_python(raw_points, now, known_types, oldest, batch)
    _CACHE.trim()
    return batch, rejected


def decode_json(body: bytes | str) -> Any:
    """A request body decoded as JSON, or a ValidationError naming `body` that says why not."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ValidationError.of([Problem("body", f"is not valid JSON: {exc}")]) from None


def parse_json_points(
    body: bytes,
    now: float,
    *,
    known_types: Mapping[str, MetricType] | None = None,
    oldest: float = -math.inf,
    max_points: int,
) -> tuple[int, PointBatch, list[Rejection]] | None:
    """The points of a request body `{"metrics": [...]}` straight from its JSON bytes: how many
    it holds, the valid ones (up to `max_points`) as a batch, and the rejections.

    The C speedup scans the bytes once and takes the ordinary points without making a Python
    object of them; it hands the others' bytes to orjson and the Python parser, so the answer is
    exactly parse_points(orjson.loads(body)["metrics"]). None when the body is not that plain
    shape, not valid JSON, or the speedup is not built: decode it whole and use parse_points,
    which says what is wrong.
    """
    if _speedups is None:
        return None
    batch = PointBatch()
    known = known_types if known_types is not None else {}
    found = _speedups.parse_json(
        body,
        now,
        now + MAX_FUTURE_SECONDS,
        oldest,
        _SERIES_TABLE,
        _CACHE.series,
        known,
        _TYPES_BY_VALUE,
        MetricType.UNIQUE,
        MetricType.COUNT,
        max_points,
        batch.index,
        batch.names,
        batch.types,
        batch.tags,
        batch.series,
        None,  # timestamps and values: packed doubles only, float objects when asked for
        None,
        batch.packed_ts,
        batch.packed_values,
    )
    if found is None:
        return None
    batch.defer_floats(len(batch.names))  # before the Python parser appends the points it takes
    count, slow = found
    rejected: list[Rejection] = []
    if slow:
        view = memoryview(body)
        try:
            points = [orjson.loads(view[start:end]) for _, start, end in slow]
        except orjson.JSONDecodeError:
            return None
        rejected = _parse_python(points, now, known_types, oldest, batch, [i for i, _, _ in slow])
    _CACHE.trim()
    return count, batch, rejected


def _check_window(raw: Any, name: Any, i: int, problems: list[Problem], windows: dict[str, int]) -> None:
    if raw is None:
        return
    try:
        window_ms = parse_duration(raw)
    except ValueError as exc:
        problems.append(Problem(f"metrics[{i}].window", str(exc)))
        return
    if window_ms % 1000:
        problems.append(Problem(f"metrics[{i}].window", "must be a whole number of seconds"))
    elif not problems:
        windows[name] = window_ms
