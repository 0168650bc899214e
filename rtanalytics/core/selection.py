"""Which series a query reads and which group each falls in; cached while the series set stands."""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import attrs
import numpy as np

from rtanalytics.core.metrics import Tags
from rtanalytics.core.query import Query
from rtanalytics.ports.metric_store import SeriesSet

GroupKey = tuple[str | None, ...]


@attrs.frozen
class Selection:
    """Series ids (int64) and their group index; groups are numbered in sorted key order."""

    ids: np.ndarray = attrs.field(eq=False)
    groups: np.ndarray = attrs.field(eq=False)
    keys: tuple[GroupKey, ...]
    labels: tuple[dict[str, str | None], ...]  # each key as {tag: value}, built once; read-only


def group_order(key: GroupKey) -> tuple[tuple[bool, str], ...]:
    """Sort key of group keys: by value, a missing tag (None) last."""
    return tuple((v is None, v or "") for v in key)


def group_of(query: Query) -> Callable[[Tags], GroupKey | None]:
    """A series' group key under the query's filters and group_by; None when filtered out."""
    group_by = query.group_by

    def of(tags: Tags) -> GroupKey | None:
        if not query.matches(tags):
            return None
        if not group_by:
            return ()
        as_dict = dict(tags)
        return tuple(as_dict.get(k) for k in group_by)

    return of


def select(series: SeriesSet, query: Query) -> Selection:
    """Filter a metric's series and group them by the query's `group_by` tags."""
    chosen: list[int] = []
    keys: list[GroupKey] = []
    of = group_of(query)
    for sid, tags in zip(series.ids.tolist(), series.tags):
        key = of(tags)
        if key is not None:
            chosen.append(sid)
            keys.append(key)
    distinct = sorted(set(keys), key=group_order)
    number = {key: i for i, key in enumerate(distinct)}
    return Selection(
        np.array(chosen, dtype=np.int64),
        np.array([number[k] for k in keys], dtype=np.int64),
        tuple(distinct),
        tuple(dict(zip(query.group_by, key)) for key in distinct),
    )


class SelectionCache:
    """Selections by (tenant, metric, filters, group_by), valid while the store hands back the
    same SeriesSet object (stores build a new one when a metric gains or loses a series)."""

    def __init__(self, size: int = 512) -> None:
        self._size = size
        self._entries: OrderedDict[Hashable, tuple[SeriesSet, Selection]] = OrderedDict()

    def get(self, tenant: str, name: str, series: SeriesSet, query: Query) -> Selection:
        key = (tenant, name, query.filters, query.group_by)
        entry = self._entries.get(key)
        if entry is not None and entry[0] is series:
            self._entries.move_to_end(key)
            return entry[1]
        selection = select(series, query)
        self._entries[key] = (series, selection)
        if len(self._entries) > self._size:
            self._entries.popitem(last=False)
        return selection
