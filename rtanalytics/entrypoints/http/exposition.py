"""Metrics in the Prometheus text format (0.0.4) or OpenMetrics, produced in chunks.

The mapping of SPEC §3: count and sum become counters (`_total`, from every point a series ever
took); average, min, max, rate and unique become gauges over the metric's window; percentile
becomes a summary (quantiles 0.5/0.95/0.99 over the window, `_sum` and `_count` cumulative).

The service's own metrics go through prometheus_client (`render`). The tenant's series, which
may be hundreds of thousands, are written by `family_text`, CHUNK series at a time, so no
export is built as one string: prometheus_client's per-sample formatting took ~1.5 s for
100,000 series (bench/export_prometheus.py), over the 1 s the export must take. The tests parse
the output back with prometheus_client's parsers and run promtool on it. The lines are valid in
both formats, which differ here only in the content type and OpenMetrics' closing `# EOF`.
"""

from __future__ import annotations

import functools
import re
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.exposition import generate_latest as text_latest
from prometheus_client.openmetrics import exposition as openmetrics
from prometheus_client.openmetrics.exposition import generate_latest as openmetrics_latest

from rtanalytics.core.metrics import MetricType, Tags
from rtanalytics.core.results import MetricSnapshot

CHUNK = 2_000
TEXT_CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4
OPENMETRICS_CONTENT_TYPE: str = openmetrics.CONTENT_TYPE_LATEST
_BAD_NAME = re.compile(r"[^a-zA-Z0-9_:]")
_BAD_LABEL = re.compile(r"[^a-zA-Z0-9_]")
QUANTILES = (("0.5", "p50"), ("0.95", "p95"), ("0.99", "p99"))


def metric_name(name: str) -> str:
    """A Prometheus metric name: dots and other characters become underscores."""
    out = _BAD_NAME.sub("_", name)
    return f"_{out}" if out[:1].isdigit() else out


@functools.lru_cache(maxsize=4096)
def label_name(key: str, reserved: tuple[str, ...] = ()) -> str:
    """A Prometheus label name; names Prometheus reserves (`__*`, `quantile` in a summary) get `tag_`."""
    out = _BAD_LABEL.sub("_", key)
    if out.startswith("__") or out in reserved or out[:1].isdigit():
        out = f"tag_{out}"
    return out


def wants_openmetrics(accept: str | None) -> bool:
    return accept is not None and "application/openmetrics-text" in accept


class _One:
    def __init__(self, family: Metric) -> None:
        self.family = family

    def collect(self) -> Iterator[Metric]:
        yield self.family


def render(families: Iterable[Metric], openmetrics: bool) -> bytes:
    """The exposition of some families through prometheus_client, without `# EOF`."""
    registry = CollectorRegistry(auto_describe=False)
    for family in families:
        registry.register(_One(family))
    if openmetrics:
        text: bytes = openmetrics_latest(registry)  # type: ignore[no-untyped-call]
        return text[: -len(b"# EOF\n")] if text.endswith(b"# EOF\n") else text
    return text_latest(registry)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


_LABEL_TEXT: dict[tuple[Tags, bool], str] = {}


def _label_text(tags: Tags, summary: bool) -> str:
    """`k="v",...` of one series, cached: the same series is exported at every scrape."""
    key = (tags, summary)
    text = _LABEL_TEXT.get(key)
    if text is None:
        reserved = ("quantile",) if summary else ()
        text = ",".join(f'{label_name(k, reserved)}="{_escape(v)}"' for k, v in tags)
        if len(_LABEL_TEXT) > 1_000_000:
            _LABEL_TEXT.clear()
        _LABEL_TEXT[key] = text
    return text


def _number(value: float) -> str:
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value))


def _line(name: str, labels: str, value: float) -> str:
    return f"{name}{{{labels}}} {_number(value)}\n" if labels else f"{name} {_number(value)}\n"


def family_text(snapshot: MetricSnapshot, start: int, stop: int, headers: bool, openmetrics: bool) -> str:
    """Series [start, stop) of one metric as exposition lines; HELP and TYPE when `headers`.

    The formats differ in one thing here: a counter's HELP and TYPE name the `_total` sample in
    the text format and the family (without `_total`) in OpenMetrics.
    """
    info = snapshot.info
    base = metric_name(info.name)
    family = base
    window = info.window_ms // 1000
    lines: list[str] = []
    if info.type in (MetricType.COUNT, MetricType.SUM):
        kind, help_text = "counter", f"{info.name} ({info.type.value})"
        total = f"{base}_total"
        family = base if openmetrics else total
        for i in range(start, stop):
            lines.append(_line(total, _label_text(snapshot.tags[i], False), snapshot.sums[i]))
    elif info.type is MetricType.PERCENTILE:
        kind, help_text = "summary", f"{info.name} (percentile); quantiles over the last {window}s"
        for i in range(start, stop):
            labels = _label_text(snapshot.tags[i], True)
            value: Any = snapshot.values[i]
            if isinstance(value, dict):
                for quantile, key in QUANTILES:
                    if value.get(key) is not None:
                        with_q = f'{labels},quantile="{quantile}"' if labels else f'quantile="{quantile}"'
                        lines.append(_line(base, with_q, value[key]))
            lines.append(_line(f"{base}_sum", labels, snapshot.sums[i]))
            lines.append(_line(f"{base}_count", labels, snapshot.counts[i]))
    else:
        kind = "gauge"
        help_text = f"{info.name} ({info.type.value}); {snapshot.aggregation} over the last {window}s"
        for i in range(start, stop):
            if snapshot.values[i] is not None:
                lines.append(_line(base, _label_text(snapshot.tags[i], False), float(snapshot.values[i])))
    if not lines:
        return ""
    if headers:
        escaped = help_text.replace("\\", "\\\\").replace("\n", "\\n")
        lines.insert(0, f"# HELP {family} {escaped}\n# TYPE {family} {kind}\n")
    return "".join(lines)


async def chunks(snapshots: AsyncIterator[MetricSnapshot], openmetrics: bool) -> AsyncIterator[bytes]:
    """The exposition of every snapshot, CHUNK series at a time."""
    seen: set[str] = set()
    async for snapshot in snapshots:
        name = metric_name(snapshot.info.name)
        if name in seen:  # two names that sanitise alike: the first one wins (docs/decisions.md)
            continue
        seen.add(name)
        headers = True
        for start in range(0, len(snapshot.tags), CHUNK):
            text = family_text(snapshot, start, min(start + CHUNK, len(snapshot.tags)), headers, openmetrics)
            if text:
                headers = False
                yield text.encode()
