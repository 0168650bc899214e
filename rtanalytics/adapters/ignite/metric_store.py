"""The MetricStore over an Apache Ignite cluster (pyignite's asyncio thin client).

Layout (SPEC §6, docs/decisions.md "Ignite layout"):

* `realtime_metrics` (1 s buckets, TTL `CACHE_TTL`), `timeseries_data` (1 min buckets, TTL 24 h),
  `aggregated_metrics` (1 h buckets and per-series totals, no TTL): one entry per
  (tenant, metric, chunk of buckets, writer), whose value is a binary block (codec.py) of every
  cell -- (series, bucket) -- that writer holds in that chunk. A query for one metric reads a
  handful of keys (a 1-minute window: ~3 raw chunks per writer), because pyignite pays ~0.1 ms
  per key but moves byte arrays at 50-200 MB/s.
* `rta_registry`: metric types per tenant, series per metric, the writer list, and one marker
  per writer (flush sequence, input positions, recent changes, heartbeat).

Every process is one writer and only ever rewrites its own entries, so concurrent writers of one
series and bucket never lose an update: reads merge the writers' blocks. Points are buffered and
flushed at least every `flush_interval_s` in one transaction that also carries the writer's
marker (its input positions for the stream worker), so state and position land together or not
at all. Until a flush lands, this process's own reads merge its buffered points (read your
writes); other instances see them after the flush.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import os
import socket
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np
import orjson

from rtanalytics.core.errors import BackendUnavailableError
from rtanalytics.core.metrics import (
    KIND_OF_TYPE,
    MetricInfo,
    MetricType,
    PointBatch,
    StateKind,
    Tags,
    series_key,
)
from rtanalytics.core.planner import Plan
from rtanalytics.core.states import Partials
from rtanalytics.core.windows import Tier, default_tiers
from rtanalytics.ports.metric_store import GroupOf, SeriesSet, StoreStats, WatchRead
from rtanalytics.ports.update_bus import ChangeHandler

from . import codec
from .cells import Points, SeriesIndex, SlotIndex, blocks_for_tier, fold, totals_block
from .codec import Block

log = logging.getLogger("rtanalytics.ignite")

TIER_CACHES = ("realtime_metrics", "timeseries_data", "aggregated_metrics")
REGISTRY_CACHE = "rta_registry"
CHUNK_SPANS = (30, 60, 24)  # buckets per entry: 30 s raw, 1 h fine, 1 day coarse
SEP = "\x1f"
_CHANGE_MEMORY_S = 5.0  # how long a writer's marker lists the names it changed


def _ignite_errors() -> tuple[type[BaseException], ...]:
    from pyignite import exceptions as ex

    return (OSError, asyncio.TimeoutError, ex.ReconnectError, ex.SocketError, ex.CacheError, ex.ClusterError)


@attrs.frozen
class IgniteSettings:
    nodes: tuple[tuple[str, int], ...] = (("127.0.0.1", 10800),)
    backups: int = 1
    raw_ttl_s: int = 3_600
    flush_interval_s: float = 0.5
    sync_interval_s: float = 0.25
    writer_id: str = attrs.field(factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    max_buffered_points: int = 2_000_000
    block_cache_cells: int = 2_000_000  # per cache: this writer's blocks, other writers' blocks
    op_timeout_s: float = 10.0
    lease_s: float = 5.0


def series_id(name: str, tags: Tags) -> int:
    """A series' id, the same in every process: 63 bits of BLAKE2b over its series key (name
    and tags with each value's length, so no tag value can read as more tags). Ids are stored
    in the registry when a series is first written; a series keeps the id it was given then."""
    text = series_key(name, tags)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little") >> 1


@attrs.frozen
class _SeriesReg:
    by_tags: dict[Tags, int]
    view: SeriesSet
    by_key: dict[str, int]  # the same ids by series key: a str caches its hash, a tags tuple does not


def _series_reg(name: str, raw: str | None) -> _SeriesReg:
    rows = orjson.loads(raw)["series"] if raw else []
    return _series_of(name, {tuple((k, v) for k, v in tags): sid for sid, tags in rows})


def _series_of(name: str, by_tags: dict[Tags, int]) -> _SeriesReg:
    ids = np.fromiter(by_tags.values(), dtype=np.int64, count=len(by_tags))
    by_key = {series_key(name, tags): sid for tags, sid in by_tags.items()}
    return _SeriesReg(by_tags, SeriesSet(ids, tuple(by_tags)), by_key)


def _encode_series(by_tags: Mapping[Tags, int]) -> str:
    return orjson.dumps(
        {"v": 1, "series": [[sid, [list(t) for t in tags]] for tags, sid in by_tags.items()]}
    ).decode()


class IgniteMetricStore:
    """MetricStore on Ignite; one instance per process (it is one writer)."""

    def __init__(self, settings: IgniteSettings | None = None, tiers: Sequence[Tier] | None = None) -> None:
        self.settings = settings or IgniteSettings()
        self.tiers = tuple(tiers) if tiers is not None else default_tiers()
        if len(self.tiers) != len(TIER_CACHES):
            raise ValueError("the Ignite store keeps exactly three tiers")
        self.writer = self.settings.writer_id
        self._token = uuid.uuid4().hex
        self._client: Any = None
        self._caches: list[Any] = []
        self._registry: Any = None
        self.up = False
        self._down_reason = ""
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        # registries, as last read
        self._metrics: dict[str, dict[str, MetricInfo]] = {}
        self._series: dict[tuple[str, str], _SeriesReg] = {}
        self._tenants: set[str] = set()
        self._writers: list[str] = [self.writer]
        self._seen: dict[str, tuple[int, int]] = {}  # writer -> (seq, registry epoch) last seen
        # the write path
        self._pending: dict[tuple[str, str], list[Points]] = {}
        self._inflight: dict[tuple[str, str], list[Points]] = {}
        self._retry: dict[tuple[str, str], list[Points]] = {}
        self._retry_seq: int | None = None
        self._buffered = 0
        self._seq = 0
        self._reg_epoch = 0
        self._gen = 0  # odd while a flush commits: reads that overlap one retry
        self._committed = asyncio.Event()
        self._flush_lock = asyncio.Lock()
        self._positions: dict[str, Any] = {}
        self._positions_dirty = False
        self._heartbeat = 0.0
        self._changes: list[tuple[int, float, str, list[str]]] = []
        self._dirty_names: dict[str, set[str]] = {}
        # this writer's own blocks as committed (it is their only writer), and keys known absent
        self._own: OrderedDict[tuple[int, str], tuple[Block, float]] = OrderedDict()
        self._own_cells = 0
        self._own_absent: set[tuple[int, str]] = set()
        # other writers' blocks, valid while that writer's flush sequence is unchanged
        self._remote: OrderedDict[tuple[int, str], tuple[int, float, Block | None]] = OrderedDict()
        self._remote_cells = 0
        self._last_sync = 0.0
        self._listeners: list[ChangeHandler] = []
        # figures
        self.flushes = 0
        self.flush_failures = 0
        self.last_flush_ms = 0.0
        self.blocks_cached = 0  # blocks a read took from this process's block caches
        self.keys_read = 0  # keys a read asked Ignite for
        self.keys_found = 0  # ... and Ignite held
        self.flush_own_hits = 0  # blocks a flush merged into without reading them back
        self.flush_own_misses = 0

    # ---- lifecycle ----------------------------------------------------------------------------

    async def start(self) -> None:
        try:
            await self._connect()
        except _ignite_errors() as exc:
            where = ", ".join(f"{h}:{p}" for h, p in self.settings.nodes)
            raise BackendUnavailableError(
                f"Ignite is unreachable at {where}: {exc or type(exc).__name__}; "
                "start it (scripts/devservices up ignite) or set IGNITE_HOST/IGNITE_PORT"
            ) from exc
        await self._take_lease()
        self.up = True
        self._committed.set()
        self._tasks = [
            asyncio.create_task(self._flush_loop(), name="rta-ignite-flush"),
            asyncio.create_task(self._sync_loop(), name="rta-ignite-sync"),
        ]

    async def aclose(self) -> None:
        self._closing = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks = []
        if self.up or self._pending or self._retry:
            for _ in range(3):
                try:
                    await self.flush()
                    break
                except BackendUnavailableError:
                    await asyncio.sleep(0.5)
            else:
                log.error("ignite: %d buffered points could not be flushed at shutdown", self._buffered)
        await self._disconnect()
        self.up = False

    async def _connect(self) -> None:
        from pyignite import AioClient
        from pyignite.datatypes import ExpiryPolicy
        from pyignite.datatypes.cache_config import CacheAtomicityMode, CacheMode
        from pyignite.datatypes.prop_codes import (
            PROP_BACKUPS_NUMBER,
            PROP_CACHE_ATOMICITY_MODE,
            PROP_CACHE_MODE,
            PROP_EXPIRY_POLICY,
            PROP_NAME,
        )

        client = AioClient(partition_aware=True, handshake_timeout=5.0)
        await asyncio.wait_for(client.connect(list(self.settings.nodes)), timeout=15)
        ttls = (self.settings.raw_ttl_s, self.tiers[1].retention_s, None, None)
        caches = []
        for name, ttl in zip((*TIER_CACHES, REGISTRY_CACHE), ttls):
            props: dict[int, Any] = {
                PROP_NAME: name,
                PROP_CACHE_MODE: CacheMode.PARTITIONED,
                PROP_CACHE_ATOMICITY_MODE: CacheAtomicityMode.TRANSACTIONAL,
                PROP_BACKUPS_NUMBER: self.settings.backups,
            }
            if ttl is not None:
                props[PROP_EXPIRY_POLICY] = ExpiryPolicy(create=ttl * 1000, update=ttl * 1000)
            caches.append(await client.get_or_create_cache(props))
        self._client = client
        self._caches = caches[:3]
        self._registry = caches[3]

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await client.close()

    async def _take_lease(self) -> None:
        """Be the only live process writing as this writer id (a restarted one waits out the lease)."""
        key = self._marker_key(self.writer)
        deadline = time.time() + self.settings.lease_s + 1
        while True:
            raw = await self._registry.get(key)
            marker = orjson.loads(raw) if raw else None
            if marker is None or marker.get("token") == self._token:
                break
            age = time.time() - float(marker.get("heartbeat", 0))
            if age > self.settings.lease_s:
                break
            if time.time() > deadline:
                raise BackendUnavailableError(
                    f"writer id {self.writer!r} is in use by another live process (heartbeat {age:.1f}s ago); "
                    "give each process its own RTA_WRITER_ID"
                )
            await asyncio.sleep(0.5)
        if marker is not None:
            self._seq = int(marker.get("seq", 0))
            self._positions = dict(marker.get("positions", {}))
        await self._put_marker()

        def join(raw: str | None) -> str | None:  # the list of writers readers use
            writers = orjson.loads(raw) if raw else {}
            if self.writer in writers:
                return None
            return orjson.dumps({**writers, self.writer: time.time()}).decode()

        self.up = True  # for _io; start() keeps it so
        await self._update("writers", join)
        await self._refresh_writers()

    def _marker(self) -> str:
        now = time.time()
        self._changes = [c for c in self._changes if now - c[1] < _CHANGE_MEMORY_S]
        return orjson.dumps(
            {
                "token": self._token,
                "heartbeat": now,
                "seq": self._seq,
                "reg": self._reg_epoch,
                "positions": self._positions,
                "changes": [[seq, tenant, names] for seq, _, tenant, names in self._changes],
            }
        ).decode()

    async def _put_marker(self) -> None:
        await self._registry.put(self._marker_key(self.writer), self._marker())
        self._heartbeat = time.time()

    @staticmethod
    def _marker_key(writer: str) -> str:
        return f"W{SEP}{writer}"

    # ---- failures -----------------------------------------------------------------------------

    def _unavailable(self) -> BackendUnavailableError:
        return BackendUnavailableError(
            f"the Ignite cluster is unreachable ({self._down_reason}); retrying, try again shortly"
        )

    def _check_up(self) -> None:
        if not self.up:
            raise self._unavailable()

    def _lost(self, exc: BaseException) -> None:
        if self.up:
            log.warning("ignite: connection lost: %s", exc or type(exc).__name__)
        self.up = False
        self._down_reason = str(exc) or type(exc).__name__

    async def _io(self, make: Callable[[], Any]) -> Any:
        """Run one Ignite call; a connection error is retried once, then marks the store down."""
        self._check_up()
        errors = _ignite_errors()
        for attempt in range(2):
            try:
                return await asyncio.wait_for(make(), self.settings.op_timeout_s)
            except errors as exc:
                if attempt == 1 or self._closing:
                    self._lost(exc)
                    raise self._unavailable() from exc
                await asyncio.sleep(0.05)
        raise AssertionError("unreachable")

    async def _reconnect(self) -> None:
        delay = 0.25
        while not self.up and not self._closing:
            await self._disconnect()
            try:
                await self._connect()
                self.up = True
                log.warning("ignite: reconnected")
                await self._refresh_writers()
                self._invalidate()
                return
            except _ignite_errors() as exc:
                self._down_reason = str(exc) or type(exc).__name__
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    # ---- registries ---------------------------------------------------------------------------

    async def _get(self, key: str) -> Any:
        return await self._io(lambda: self._registry.get(key))

    async def _get_all(self, cache: int, keys: list[str]) -> dict[str, Any]:
        return dict(await self._io(lambda: self._caches[cache].get_all(keys)))

    async def _swap(self, key: str, raw: str | None, value: str) -> bool:
        """Put `value` if the entry still holds `raw` (None: if it is absent)."""
        return bool(
            await self._io(
                lambda: (
                    self._registry.put_if_absent(key, value)
                    if raw is None
                    else self._registry.replace_if_equals(key, raw, value)
                )
            )
        )

    async def _update(self, key: str, change: Callable[[str | None], str | None]) -> str | None:
        """Compare-and-set loop on a registry entry: `change(current)` gives the new value, or
        None when nothing needs to change; returns the value the entry holds afterwards."""
        for _ in range(100):
            raw = await self._get(key)
            value = change(raw)
            if value is None:
                return raw  # type: ignore[no-any-return]
            if await self._swap(key, raw, value):
                self._reg_epoch += 1
                return value
        raise self._unavailable()  # pragma: no cover - a hundred lost races in a row

    def _invalidate(self) -> None:
        self._metrics.clear()
        self._series.clear()

    async def _metric_reg(self, tenant: str) -> dict[str, MetricInfo]:
        held = self._metrics.get(tenant)
        if held is None:
            held = self._metrics[tenant] = _decode_metrics(await self._get(f"M{SEP}{tenant}"))
        return held

    async def metrics(self, tenant: str) -> Mapping[str, MetricInfo]:
        return dict(await self._metric_reg(tenant))

    async def claim(self, tenant: str, infos: Sequence[MetricInfo]) -> Mapping[str, MetricInfo]:
        if tenant not in self._tenants:

            def join(raw: str | None) -> str | None:
                names = set(orjson.loads(raw)) if raw else set()
                return None if tenant in names else orjson.dumps(sorted(names | {tenant})).decode()

            self._tenants |= set(orjson.loads(await self._update("tenants", join) or "[]"))

        def add(raw: str | None) -> str | None:  # first type wins; a `window` updates the metric
            known = _decode_metrics(raw)
            changed = False
            for info in infos:
                held = known.get(info.name)
                if held is None or (held.type is info.type and held.window_ms != info.window_ms):
                    known[info.name] = info
                    changed = True
            return _encode_metrics(known) if changed else None

        held = self._metrics[tenant] = _decode_metrics(await self._update(f"M{SEP}{tenant}", add))
        return {info.name: held[info.name] for info in infos}

    async def _series_reg(self, tenant: str, name: str) -> _SeriesReg:
        held = self._series.get((tenant, name))
        if held is None:
            raw = await self._get(f"S{SEP}{tenant}{SEP}{name}")
            held = self._series[(tenant, name)] = _series_reg(name, raw)
        return held

    async def series(self, tenant: str, name: str) -> SeriesSet:
        return (await self._series_reg(tenant, name)).view

    async def _register(self, tenant: str, name: str, new: dict[Tags, int]) -> None:
        def add(raw: str | None) -> str | None:
            held = _series_reg(name, raw).by_tags
            missing = {tags: sid for tags, sid in new.items() if tags not in held}
            return _encode_series({**held, **missing}) if missing else None

        value = await self._update(f"S{SEP}{tenant}{SEP}{name}", add)
        self._series[(tenant, name)] = _series_reg(name, value)

    async def _tenant_series_count(self, tenant: str) -> int:
        infos = await self._metric_reg(tenant)
        missing = [n for n in infos if (tenant, n) not in self._series]
        if missing:
            keys = [f"S{SEP}{tenant}{SEP}{n}" for n in missing]
            got = await self._io(lambda: self._registry.get_all(keys))
            for n, k in zip(missing, keys, strict=True):
                self._series[(tenant, n)] = _series_reg(n, got.get(k))
        return sum(len(self._series[(tenant, n)].by_tags) for n in infos)

    # ---- writes -------------------------------------------------------------------------------

    async def write(
        self, tenant: str, batch: PointBatch, now: float, max_series: int
    ) -> list[tuple[int, str]]:
        self._check_up()
        if self._buffered >= self.settings.max_buffered_points:
            raise BackendUnavailableError(
                f"{self._buffered} points wait to be flushed to Ignite (limit "
                f"{self.settings.max_buffered_points}); try again shortly"
            )
        by_name: dict[str, list[int]] = {}
        for i, name in enumerate(batch.names):
            by_name.setdefault(name, []).append(i)
        refused: list[tuple[int, str]] = []
        ts_all = np.fromiter(batch.timestamps, dtype=np.float64, count=len(batch))
        numeric_all = None
        keys = batch.series
        for name, positions in by_name.items():
            reg = await self._series_reg(tenant, name)
            known = reg.by_tags
            by_key = reg.by_key
            sids = []
            new: dict[Tags, int] = {}
            for i in positions:
                sid = by_key.get(keys[i])
                if sid is None:
                    tags = batch.tags[i]
                    sid = new.get(tags)
                    if sid is None:
                        sid = new[tags] = series_id(name, tags)
                sids.append(sid)
            keep = positions
            if new:
                room = max_series - await self._tenant_series_count(tenant)
                if room < len(new):
                    allowed = dict(list(new.items())[: max(0, room)])
                    keep = []
                    kept_sids = []
                    for i, sid in zip(positions, sids):
                        tags = batch.tags[i]
                        if tags in known or tags in allowed:
                            keep.append(i)
                            kept_sids.append(sid)
                        else:
                            refused.append(
                                (i, f"the tenant has reached its limit of {max_series} active series")
                            )
                    sids, new = kept_sids, allowed
                if new:
                    await self._register(tenant, name, new)
                    # the registry's ids: another process may have registered one first
                    registered = self._series[(tenant, name)].by_tags
                    sids = [registered[batch.tags[i]] for i in keep]
            if not keep:
                continue
            kind = KIND_OF_TYPE[batch.types[keep[0]]]
            picked = np.array(keep, dtype=np.int64)
            ts = ts_all[picked]
            identities = None
            if kind is StateKind.DISTINCT:
                identities = [str(batch.values[i]) for i in keep]
                numeric = np.zeros(len(keep))
            else:
                if numeric_all is None:
                    numeric_all = batch.numbers()
                numeric = numeric_all[picked]
            points = Points(kind, np.array(sids, dtype=np.int64), ts, numeric, identities, now)
            self._pending.setdefault((tenant, name), []).append(points)
            self._buffered += len(keep)
            self._dirty_names.setdefault(tenant, set()).add(name)
        refused.sort()
        return refused

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.flush_interval_s)
            if not self.up:
                await self._reconnect()
                continue
            try:
                await self.flush()
            except BackendUnavailableError:
                continue
            except Exception:  # pragma: no cover - logged, the loop lives on
                log.exception("ignite: flush failed")

    def set_position(self, source: str, position: Any) -> None:
        """Record an input position; it is committed with the next flush, atomically with the
        state of every point written before this call (the stream worker resumes from it)."""
        self._positions[source] = position
        self._positions_dirty = True

    async def committed_position(self, source: str) -> Any:
        raw = await self._get(self._marker_key(self.writer))
        return (orjson.loads(raw) if raw else {}).get("positions", {}).get(source)

    async def flush(self) -> int:
        """Write buffered points to Ignite now, in one transaction with this writer's marker;
        return how many points were written."""
        async with self._flush_lock:
            self._check_up()
            if self._retry:  # an earlier commit may or may not have landed: the marker says
                raw = await self._get(self._marker_key(self.writer))
                landed = raw is not None and orjson.loads(raw).get("seq") == self._retry_seq
                if landed:
                    self._drop_points(self._retry)
                    self._seq = self._retry_seq or self._seq
                else:
                    for key, parts in self._retry.items():
                        self._pending.setdefault(key, [])[:0] = parts
                self._retry = {}
                self._retry_seq = None
            if not self._pending and not self._positions_dirty:
                if time.time() - self._heartbeat >= 1.0:  # nothing new: only say this writer lives
                    await self._io(self._put_marker)
                return 0
            self._positions_dirty = False
            self._inflight, self._pending = self._pending, {}
            dirty, self._dirty_names = self._dirty_names, {}
            started = time.perf_counter()
            seq = self._seq + 1
            try:
                count = await self._commit(self._inflight, dirty, seq)
            except BaseException as exc:
                self._own.clear()
                self._own_cells = 0
                self._own_absent.clear()
                self._retry, self._inflight = self._inflight, {}
                self._retry_seq = seq
                for tenant, names in dirty.items():
                    self._dirty_names.setdefault(tenant, set()).update(names)
                if self._gen % 2:
                    self._gen += 1
                self._committed.set()
                self.flush_failures += 1
                if isinstance(exc, _ignite_errors()):
                    self._lost(exc)
                    raise self._unavailable() from exc
                raise
            self._seq = seq
            self._drop_points(self._inflight)
            self._inflight = {}
            self.flushes += 1
            self.last_flush_ms = (time.perf_counter() - started) * 1000
            return count

    def _drop_points(self, parts: Mapping[tuple[str, str], list[Points]]) -> None:
        self._buffered -= sum(len(p.sids) for ps in parts.values() for p in ps)

    async def _commit(
        self, chunks: Mapping[tuple[str, str], list[Points]], dirty: Mapping[str, set[str]], seq: int
    ) -> int:
        from pyignite.datatypes.transactions import TransactionConcurrency, TransactionIsolation

        deltas: dict[tuple[int, str], Block] = {}
        count = 0
        for (tenant, name), parts in chunks.items():
            count += sum(len(p.sids) for p in parts)
            for t, (tier, span) in enumerate(zip(self.tiers, CHUNK_SPANS)):
                for chunk, block in blocks_for_tier(parts, tier, span).items():
                    deltas[(t, self._key(tenant, name, chunk, self.writer))] = block
            deltas[(2, self._totals_key(tenant, name, self.writer))] = totals_block(parts)
        missing: dict[int, list[str]] = {}
        for t, key in deltas:
            if (t, key) in self._own:
                self.flush_own_hits += 1
            else:
                self.flush_own_misses += 1
                missing.setdefault(t, []).append(key)
        wall = time.time()
        for t, keys in missing.items():
            if all((t, key) in self._own_absent for key in keys):
                continue
            got = await self._caches[t].get_all(keys)
            for key, raw in got.items():
                if raw is not None:
                    self._own_put((t, key), codec.decode(raw), wall)
        merged: dict[int, dict[str, bytes]] = {}
        staged: dict[tuple[int, str], Block] = {}
        for (t, key), delta in deltas.items():
            held = self._own.get((t, key))
            block = codec.merge([held[0], delta]) if held is not None else delta
            merged.setdefault(t, {})[key] = codec.encode(block)
            staged[(t, key)] = block
        now = time.time()
        if dirty:
            for tenant, names in dirty.items():
                self._changes.append((seq, now, tenant, sorted(names)))
        saved_seq, self._seq = self._seq, seq
        marker = self._marker()
        self._seq = saved_seq
        self._gen += 1
        self._committed.clear()
        try:
            tx = self._client.tx_start(
                TransactionConcurrency.PESSIMISTIC, TransactionIsolation.READ_COMMITTED
            )
            async with tx:
                for t, pairs in merged.items():
                    await self._caches[t].put_all(pairs)
                await self._registry.put(self._marker_key(self.writer), marker)
                await tx.commit()
                wall = time.time()
                for own_key, block in staged.items():  # what Ignite now holds, in step with `local`
                    self._own_put(own_key, block, wall)
                    self._own_absent.discard(own_key)
        finally:
            self._gen += 1
            self._committed.set()
        return count

    def _own_put(self, key: tuple[int, str], block: Block, wall: float) -> None:
        old = self._own.pop(key, None)
        if old is not None:
            self._own_cells -= len(old[0])
        self._own[key] = (block, wall)
        self._own_cells += len(block)
        while self._own_cells > self.settings.block_cache_cells and len(self._own) > 1:
            _, (dropped, _) = self._own.popitem(last=False)
            self._own_cells -= len(dropped)

    def _remote_put(self, key: tuple[int, str], seq: int, wall: float, block: Block | None) -> None:
        old = self._remote.pop(key, None)
        if old is not None and old[2] is not None:
            self._remote_cells -= len(old[2])
        self._remote[key] = (seq, wall, block)
        self._remote_cells += len(block) if block is not None else 0
        while self._remote_cells > self.settings.block_cache_cells and len(self._remote) > 1:
            _, (_, _, dropped) = self._remote.popitem(last=False)
            self._remote_cells -= len(dropped) if dropped is not None else 0

    def _ttl(self, t: int) -> float:
        return (self.settings.raw_ttl_s, self.tiers[1].retention_s, math.inf)[t]

    def _cached(self, t: int, key: str, writer: str, wall: float) -> tuple[bool, Block | None]:
        """A block without a round trip, when this process knows what Ignite holds for it."""
        if writer == self.writer:
            own = self._own.get((t, key))
            if own is not None:
                if wall - own[1] < self._ttl(t):
                    return True, own[0]
                return False, None
            return ((t, key) in self._own_absent), None
        remote = self._remote.get((t, key))
        if (
            remote is not None
            and wall - self._last_sync < 2 * self.settings.sync_interval_s + 1
            and remote[0] == self._seen.get(writer, (-1, 0))[0]
            and wall - remote[1] < self._ttl(t)
        ):
            return True, remote[2]
        return False, None

    @staticmethod
    def _key(tenant: str, name: str, chunk: int, writer: str) -> str:
        return f"{tenant}{SEP}{name}{SEP}{chunk}{SEP}{writer}"

    @staticmethod
    def _totals_key(tenant: str, name: str, writer: str) -> str:
        return f"{tenant}{SEP}{name}{SEP}totals{SEP}{writer}"

    # ---- reads --------------------------------------------------------------------------------

    def _local(self, tenant: str, name: str) -> list[Points]:
        """Points of this metric accepted here and not yet known to be in Ignite."""
        key = (tenant, name)
        return [*self._retry.get(key, ()), *self._inflight.get(key, ()), *self._pending.get(key, ())]

    async def _read_consistent(
        self, tenant: str, name: str, fetch: Callable[[], Any]
    ) -> tuple[Any, list[Points]]:
        """Ignite entries plus the local points, with no flush committing in between (a commit
        moves points from local to Ignite: overlapping it would count them twice or not at all)."""
        while True:  # a commit lands at most every flush interval: a retry is rare, two rarer
            await self._committed.wait()
            gen = self._gen
            local = self._local(tenant, name)
            fetched = await fetch()
            if gen == self._gen:
                return fetched, local

    async def aggregate(
        self,
        tenant: str,
        name: str,
        kind: StateKind,
        series_ids: np.ndarray,
        groups: np.ndarray,
        group_count: int,
        plan: Plan,
        fields: frozenset[str] | None = None,
    ) -> Partials:
        out = Partials(kind, group_count, plan.slots)
        self._check_up()
        if len(series_ids) == 0 or not plan.reads:
            return out
        index = SeriesIndex(np.asarray(series_ids, dtype=np.int64), np.asarray(groups, dtype=np.int64))
        wanted: list[tuple[int, list[tuple[tuple[int, str], str]]]] = []
        for read in plan.reads:
            tier = self.tiers[read.tier]
            chunk_len = tier.resolution_s * CHUNK_SPANS[read.tier]
            chunks = np.unique((read.bucket_starts // chunk_len) * chunk_len).tolist()
            keys = [((c, self._key(tenant, name, c, w)), w) for c in chunks for w in self._writers]
            wanted.append((read.tier, keys))

        async def resolve() -> list[list[tuple[int, Block]]]:
            wall = time.time()
            found: list[list[tuple[int, Block]]] = []
            fetch: list[list[tuple[int, str, str, int]]] = []
            for t, keys in wanted:
                hits, misses = [], []
                for (chunk, key), writer in keys:
                    known, block = self._cached(t, key, writer, wall)
                    if not known:
                        misses.append((chunk, key, writer, self._seen.get(writer, (-1, 0))[0]))
                    elif block is not None:
                        self.blocks_cached += 1
                        hits.append((chunk, block))
                found.append(hits)
                fetch.append(misses)
            if any(fetch):
                results = await self._io(
                    lambda: asyncio.gather(
                        *(
                            self._caches[t].get_all([m[1] for m in misses])
                            for (t, _), misses in zip(wanted, fetch)
                            if misses
                        )
                    )
                )
                results = iter(results)
                for (t, _), misses, hits in zip(wanted, fetch, found):
                    if not misses:
                        continue
                    got = next(results)
                    self.keys_read += len(misses)
                    for chunk, key, writer, seq in misses:
                        raw = got.get(key)
                        block = codec.decode(raw) if raw is not None else None
                        if block is not None:
                            self.keys_found += 1
                            hits.append((chunk, block))
                        if writer == self.writer:
                            if block is None:
                                self._own_absent.add((t, key))
                            else:
                                self._own_put((t, key), block, wall)
                        else:
                            self._remote_put((t, key), seq, wall, block)
            return found

        results, local = await self._read_consistent(tenant, name, resolve)
        for read, (t, _), blocks in zip(plan.reads, wanted, results, strict=True):
            slots = SlotIndex(read, self.tiers[t])
            if local:
                blocks = [*blocks, *blocks_for_tier(local, self.tiers[t], CHUNK_SPANS[t]).items()]
            for chunk, block in blocks:
                fold(out, block, chunk, slots, index, fields)
        return out

    async def watch(self, tenant: str, name: str, kind: StateKind, group_of: GroupOf) -> int | None:
        """None: other instances write to the same cluster, so no aggregate kept from this
        instance's writes would be whole; live queries read series (MetricStore.watch)."""
        return None

    async def read_watch(
        self, watch: int, start: int, end: int, fields: frozenset[str] | None = None
    ) -> WatchRead | None:
        return None

    async def unwatch(self, watch: int) -> None:
        return None

    async def totals(self, tenant: str, name: str, series_ids: np.ndarray) -> np.ndarray:
        out = np.zeros((len(series_ids), 2))
        if len(series_ids) == 0:
            return out
        keys = [self._totals_key(tenant, name, w) for w in self._writers]

        async def fetch() -> dict[str, Any]:
            return dict(await self._io(lambda: self._caches[2].get_all(keys)))

        got, local = await self._read_consistent(tenant, name, fetch)
        blocks = [codec.decode(raw) for raw in got.values() if raw is not None]
        if local:
            blocks.append(totals_block(local))
        positions = np.arange(len(series_ids), dtype=np.int64)  # each series is its own group
        index = SeriesIndex(np.asarray(series_ids, dtype=np.int64), positions)
        for block in blocks:
            hit, pos = index.find(block.sids)
            np.add.at(out, index.groups[pos], block.values[hit, :2])
        return out

    # ---- housekeeping -------------------------------------------------------------------------

    async def evict(self, now: float) -> int:
        """Forget series whose every writer last wrote before the coarse tier's horizon."""
        if not self.up:
            return 0
        horizon = self.tiers[-1].oldest(now)
        dropped = 0
        for tenant in sorted(self._tenants):
            infos = await self._metric_reg(tenant)
            for name in infos:
                reg = await self._series_reg(tenant, name)
                if not reg.by_tags:
                    continue
                keys = [self._totals_key(tenant, name, w) for w in self._writers]
                got = await self._get_all(2, keys)
                last: dict[int, float] = {}
                for raw in got.values():
                    if raw is not None:
                        block = codec.decode(raw)
                        for sid, t in zip(block.sids.tolist(), block.field("last_write").tolist()):
                            last[sid] = max(last.get(sid, -np.inf), t)
                for p in self._local(tenant, name):
                    for sid, t in zip(p.sids.tolist(), p.ts.tolist()):
                        last[sid] = max(last.get(sid, -np.inf), t)
                stale = {tags for tags, sid in reg.by_tags.items() if last.get(sid, -np.inf) < horizon}
                if stale:
                    dropped += await self._unregister(tenant, name, stale)
        return dropped

    async def _unregister(self, tenant: str, name: str, stale: set[Tags]) -> int:
        gone: set[Tags] = set()

        def drop(raw: str | None) -> str | None:
            held = _series_reg(name, raw).by_tags
            gone.clear()
            gone.update(stale & set(held))
            return _encode_series({t: sid for t, sid in held.items() if t not in gone}) if gone else None

        self._series[(tenant, name)] = _series_reg(
            name, await self._update(f"S{SEP}{tenant}{SEP}{name}", drop)
        )
        return len(gone)

    async def _refresh_writers(self) -> None:
        raw = await self._registry.get("writers")
        writers = orjson.loads(raw) if raw else {}
        self._writers = sorted(set(writers) | {self.writer})

    def on_remote_change(self, listener: ChangeHandler) -> None:
        """Call `listener(tenant, names)` when another writer's flush changed these metrics."""
        self._listeners.append(listener)

    async def _sync_loop(self) -> None:
        while True:
            await asyncio.sleep(self.settings.sync_interval_s)
            if not self.up:
                continue
            try:
                await self.sync()
            except BackendUnavailableError:
                continue
            except Exception:  # pragma: no cover
                log.exception("ignite: sync failed")

    async def sync(self) -> None:
        """Read every writer's marker: learn new writers, drop registries others changed, and
        tell listeners which metrics other writers' flushes changed."""
        keys = ["writers", "tenants"] + [self._marker_key(w) for w in self._writers if w != self.writer]
        synced = time.time()
        got = await self._io(lambda: self._registry.get_all(keys))
        raw_tenants = got.pop("tenants", None)
        if raw_tenants:
            self._tenants |= set(orjson.loads(raw_tenants))
        raw_writers = got.get("writers")
        if raw_writers:
            self._writers = sorted(set(orjson.loads(raw_writers)) | {self.writer})
        stale = False
        for key, raw in got.items():
            if key == "writers" or raw is None:
                continue
            writer = key.split(SEP, 1)[1]
            marker = orjson.loads(raw)
            seq, reg = int(marker.get("seq", 0)), int(marker.get("reg", 0))
            seen = self._seen.get(writer)
            self._seen[writer] = (seq, reg)
            if seen is None:
                stale = True
                continue
            if reg != seen[1]:
                stale = True
            if seq != seen[0]:
                for change_seq, tenant, names in marker.get("changes", []):
                    if change_seq > seen[0] or seq < seen[0]:
                        for listener in self._listeners:
                            listener(tenant, frozenset(names))
        if stale:
            self._invalidate()
        self._last_sync = synced

    async def stats(self) -> StoreStats:
        details: dict[str, object] = {
            "writer": self.writer,
            "writers": len(self._writers),
            "buffered_points": self._buffered,
            "flushes": self.flushes,
            "flush_failures": self.flush_failures,
            "last_flush_ms": round(self.last_flush_ms, 3),
            # reads: blocks served from this process's caches; keys asked of Ignite that it held
            "read_cache_hit_rate": _rate(self.blocks_cached, self.blocks_cached + self.keys_read),
            "ignite_key_hit_rate": _rate(self.keys_found, self.keys_read),
            # flushes: blocks merged into without reading them back from Ignite
            "flush_cache_hit_rate": _rate(self.flush_own_hits, self.flush_own_hits + self.flush_own_misses),
        }
        series_by_tenant: dict[str, int] = {}
        metrics_by_tenant: dict[str, int] = {}
        if self.up:
            try:
                state = await asyncio.wait_for(self._client.get_cluster().get_state(), 5)
                details["cluster_state"] = {0: "inactive", 1: "active", 2: "active_read_only"}.get(
                    int(state), str(state)
                )
                details["cache_sizes"] = {
                    name: await asyncio.wait_for(cache.get_size(), 5)
                    for name, cache in zip((*TIER_CACHES, REGISTRY_CACHE), (*self._caches, self._registry))
                }
                for tenant in sorted(self._tenants):
                    metrics_by_tenant[tenant] = len(await self._metric_reg(tenant))
                    series_by_tenant[tenant] = await self._tenant_series_count(tenant)
            except Exception as exc:  # health reports a broken connection rather than failing
                if not isinstance(exc, (BackendUnavailableError, *_ignite_errors())):
                    raise
                self._lost(exc)
        else:
            details["error"] = self._down_reason
        return StoreStats("ignite", self.up, series_by_tenant, metrics_by_tenant, details)


def _rate(part: int, whole: int) -> float | None:
    return round(part / whole, 4) if whole else None


def _decode_metrics(raw: str | None) -> dict[str, MetricInfo]:
    if not raw:
        return {}
    return {
        name: MetricInfo(name, MetricType(mtype), int(window))
        for name, (mtype, window) in orjson.loads(raw)["metrics"].items()
    }


def _encode_metrics(infos: Mapping[str, MetricInfo]) -> str:
    return orjson.dumps(
        {"v": 1, "metrics": {n: [i.type.value, i.window_ms] for n, i in sorted(infos.items())}}
    ).decode()


__all__ = ["TIER_CACHES", "IgniteMetricStore", "IgniteSettings", "series_id"]
