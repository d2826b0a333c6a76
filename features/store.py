"""The feature store: Redis keeps one compact blob per subscriber; the worker computes.

``stage`` reads the batch's subscribers' state values and alert-ledger cooldown entries in
one round trip (``read.lua``) and applies the batch with one numba kernel
(``features.batch_kernel``: per subscriber, decode its value (``features.codec``), apply its
events (lateness against its clock, dedup by ``event_id``, the event times of logins, spends
and complaints for the millisecond windows, day and month buckets, a feature row right after
each applied event, see ``features.kernel`` and ``features.schema``) and encode the new
value). It writes nothing: the new values are returned as ``staged``
(``features.values``) and the batch's commit (``alerting.ledger``) stores them atomically
with the batch's alert decisions. Only a batch with duplicates costs a second, read-only round trip
(their still-pending alerts). On a Redis Cluster the read is one script per node, sent
concurrently (``churnwatch.infra.redis.script_router``).

With a :class:`~features.cache.StateCache` the worker keeps what its commits stored, and
only subscribers it has not cached are read; :meth:`FeatureStore.remember` records a
committed batch, :meth:`FeatureStore.forget` drops subscribers written by another path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Sequence

import msgspec
import numpy as np
from numba import njit

from churnwatch.core.errors import StoreError
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.core.memcopy import copy
from churnwatch.core.units import DAY_MS
from churnwatch.infra.redis.resp import mset
from churnwatch.infra.redis.script_router import ScriptRouter
from features.arena import INITIAL_SLOTS
from features.attrs import AttrBounds
from features.batch_kernel import stage_values
from features.cache import StateCache
from features.codec import EXPECTED, attrs_start, decode_states
from features.columns import Columns, encode_batch
from features.kernel import MX, PROFILE, read_features
from features.schema import DIVISOR, FEATURES, months_of
from features.values import StateValues

__all__ = ["APPLIED", "DUPLICATE", "LATE", "BatchFeatures", "FeatureStore", "StoreConfig",
           "encode_batch", "warm_up"]

APPLIED, DUPLICATE, LATE = "A", "D", "L"
_packer = msgspec.msgpack.Encoder()
_attribute_maps = msgspec.msgpack.Decoder(list[dict[str, float]]).decode


@dataclass(frozen=True)
class StoreConfig:
    """How long events may arrive late, how far ahead of the wall clock their time may be
    (``future_ms``: further ahead is a broken clock, see ``Pipeline``) and how long idle state
    is kept (``ttl_s``: after the subscriber's last event, in event time, see
    ``Pipeline.sweep``; after a churn event, in wall-clock time, as a key expiry)."""

    lateness_ms: int = 7 * DAY_MS
    future_ms: int = DAY_MS
    ttl_s: int = 400 * 86_400
    keys: Keys = Keys()
    attrs: AttrBounds = AttrBounds()  # keys per profile (features.attrs)


@dataclass(frozen=True)
class BatchFeatures:
    """The store's answer for one batch.

    ``status[i]`` is APPLIED, DUPLICATE or LATE for input event i; ``rows`` are the indices of
    the applied events, ``matrix[j]`` their features and ``attrs[j]`` their profile attributes.
    ``staged`` holds each subscriber's new state value, for the batch's commit; another layer
    may replace a value's extension record (``StateValues.replace_extension``) before the
    commit. From :meth:`FeatureStore.snapshot`, ``staged`` holds the values as stored.
    """

    status: str
    rows: np.ndarray
    matrix: np.ndarray
    attrs: list[dict[str, float]]
    subscribers: list[str]
    ledgers: dict[str, dict[str, bytes]]
    pending_alerts: list[bytes]
    staged: StateValues = field(default_factory=lambda: StateValues.of({}))
    clocks: dict[str, int] = field(default_factory=dict)  # clocks before the batch (0: new)
    generation: int = -1  # the state cache's generation when the batch was read
    # attributes before the batch of the subscribers whose attributes the batch changed
    previous_attrs: dict[str, dict[str, float]] = field(default_factory=dict)
    attrs_dropped: int = 0  # profile attributes beyond the bounds (features.attrs), dropped
    # from stage: the input events as the kernel's columns (``sub`` indexes ``subscribers``)
    columns: Columns | None = None


def _empty() -> BatchFeatures:
    return BatchFeatures("", np.empty(0, np.int64), np.empty((0, len(FEATURES))), [], [], {}, [])


@njit(cache=True)
def _attribute_array(src, tail_at, off):  # type: ignore[no-untyped-def]
    """One msgpack array of each value's attributes map (an empty map where it has none),
    given where each value's tail starts."""
    n = len(tail_at)
    starts = np.empty(n, np.int64)
    size = 5
    for i in range(n):
        starts[i] = attrs_start(src, tail_at[i], off[i + 1])
        size += max(off[i + 1] - starts[i], 1)
    out = np.empty(size, np.uint8)
    out[0] = 0xDD  # array 32
    for k in range(4):
        out[1 + k] = (n >> (24 - 8 * k)) & 0xFF
    pos = 5
    for i in range(n):
        if off[i + 1] > starts[i]:
            copy(out, pos, src, starts[i], off[i + 1] - starts[i])
            pos += off[i + 1] - starts[i]
        else:
            out[pos] = 0x80  # empty map
            pos += 1
    return out


def _attributes(src: np.ndarray, tail_at: np.ndarray, off: np.ndarray
                ) -> list[dict[str, float]]:
    """Each value's attributes, decoded at once."""
    return _attribute_maps(_attribute_array(src, tail_at, off))


def _replay(events: Sequence[Event], rows: np.ndarray, sub: np.ndarray, kind: np.ndarray,
            attrs_before: list[dict[str, float]], at_before: np.ndarray,
            bounds: AttrBounds = AttrBounds(),
            ) -> tuple[list[dict[str, float]], dict[int, tuple[int, dict[str, float]]], int]:
    """Profile attributes as of each applied event (the latest profile by event time wins),
    the subscribers whose attributes changed (index → (profile time, attributes after the
    batch)) and the attributes dropped by ``bounds``. ``attrs_before[k]`` and
    ``at_before[k]`` are subscriber k's attributes and their profile time before the batch.
    Only the applied events of subscribers with an applied profile event are walked one by
    one."""
    out = list(map(attrs_before.__getitem__, sub[rows].tolist()))
    profiled = np.unique(sub[rows[kind[rows] == PROFILE]])
    if not len(profiled):
        return out, {}, 0
    current = {k: (int(at_before[k]), attrs_before[k]) for k in profiled.tolist()}
    changed: dict[int, tuple[int, dict[str, float]]] = {}
    dropped = 0
    walk = np.flatnonzero(np.isin(sub[rows], profiled))
    for j, i in zip(walk.tolist(), rows[walk].tolist()):
        ev, k = events[i], int(sub[i])
        if ev.type == "profile":
            kept, extra = bounds.apply(ev.attrs)
            dropped += extra  # counted for every applied profile, the latest or not
            if ev.ts >= current[k][0]:
                current[k] = changed[k] = (ev.ts, kept)
        out[j] = current[k][1]
    return out, changed, dropped


def _ledgers(subscribers: Sequence[str], raw: list[Any]) -> dict[str, dict[str, bytes]]:
    """read.lua's sparse ledgers (i, entries, ...) → subscriber → {rule: entry}."""
    return {subscribers[raw[j] - 1]: {e[k].decode(): e[k + 1] for k in range(0, len(e), 2)}
            for j in range(0, len(raw), 2) for e in (raw[j + 1],)}


def _merge_reads(subscribers: Sequence[str], groups: Sequence[tuple[Any, list[int]]],
                 replies: Sequence[Any]) -> tuple[bytes, dict[str, dict[str, bytes]]]:
    """One read.lua reply (sizes, then blobs, in ``subscribers`` order) from the replies of
    several groups (a cluster's nodes or slots)."""
    pieces: list[bytes] = [b""] * len(subscribers)
    ledgers: dict[str, dict[str, bytes]] = {}
    for (_, members), (raw, raw_ledgers) in zip(groups, replies):
        sizes = np.frombuffer(raw, "<u4", len(members))
        ends = 4 * len(members) + np.cumsum(sizes)
        for i, end, size in zip(members, ends.tolist(), sizes.tolist()):
            pieces[i] = raw[end - size:end]
        ledgers.update(_ledgers([subscribers[i] for i in members], raw_ledgers))
    sizes = np.fromiter(map(len, pieces), "<u4", len(pieces)).tobytes()
    return sizes + b"".join(pieces), ledgers


def warm_up() -> None:
    """Compile the kernels (or load them from numba's cache) with a small batch, so none is
    compiled while a worker processes its first batches: one event each for more subscribers
    than half a new cache index holds (the index grows, as it does under a first backlog)."""
    ids = [f"warm-up-{i}" for i in range(INITIAL_SLOTS // 2 + 1)]
    _, cols = encode_batch([Event(event_id="warm-up", subscriber_id=sid, type="login",
                                  ts=DAY_MS * 20_000) for sid in ids])
    _, _, buf, off, blob_len, *_ = stage_values(
        np.frombuffer(b"", np.uint8), np.zeros(len(ids) + 1, np.int64), cols.sub, cols.kind,
        cols.ts, cols.day, cols.month, cols.a, cols.b, cols.tenure, cols.ids, DAY_MS)
    states, tenure, _, _, _, e_ts, e_code, e_amt, e_off, _, _ = decode_states(
        buf.tobytes(), np.diff(off))
    read_features(states, tenure, 0, 0, e_ts, e_code, e_amt, e_off)
    _attributes(np.frombuffer(buf.tobytes(), np.uint8), off[:-1] + blob_len, off)
    values = StateValues(ids, buf.tobytes(), off, blob_len)
    values.extension_heads(1)
    mset(ids, *values.buffer())
    cache = StateCache(1)
    token = cache.put(0, values, {ids[0]: {"r:x": "1"}}, {}, pin=True)
    cache.get([ids[0], "other"]).with_fetched(b"\0\0\0\0")
    cache.unpin(token)
    cache.discard(ids)


class FeatureStore:
    """Stages event batches and reads subscribers' features, one Redis round trip per batch.

    ``redis`` is a ``redis.asyncio.Redis`` client created by the caller; ``cache`` is the
    worker's write-through state cache (none by default: every batch reads from Redis).
    """

    def __init__(self, redis: Any, config: StoreConfig = StoreConfig(),
                 cache: StateCache | None = None) -> None:
        self.redis = redis
        self.config = config
        self.cache = cache if cache is not None else StateCache(capacity=0)
        self.router = ScriptRouter(redis)
        self._script = redis.register_script(
            resources.files("features").joinpath("read.lua").read_text())

    async def _fetch(self, subscribers: Sequence[str]) -> tuple[bytes, dict[str, dict[str, bytes]]]:
        """read.lua's answer for these subscribers: n uint32 sizes then the stored values, and
        their cooldown entries."""
        keys = self.config.keys
        groups = await self.router.split([keys.state(sid) for sid in subscribers])
        calls = []
        for node, members in groups:
            names: list[str] = []
            for i in members:
                names += [keys.state(subscribers[i]), keys.ledger(subscribers[i])]
            calls.append((node, names, ()))
        replies = await self.router.run(self._script, calls)
        if len(groups) == 1:
            blobs, ledgers = replies[0]
            return blobs, _ledgers(subscribers, ledgers)
        return _merge_reads(subscribers, groups, replies)

    async def _read(self, subscribers: Sequence[str]) -> tuple[
            np.ndarray, np.ndarray, dict[str, dict[str, bytes]]]:
        """The subscribers' stored values (as one buffer and n + 1 offsets) and their
        cooldown entries: cached subscribers from the cache, the others from Redis."""
        n = len(subscribers)
        cached = self.cache.get(subscribers) if self.cache.capacity else None
        if cached is None or not cached.found.any():
            raw, ledgers = await self._fetch(subscribers)
            off = np.zeros(n + 1, np.int64)
            np.cumsum(np.frombuffer(raw, "<u4", n), out=off[1:])
            return np.frombuffer(raw, np.uint8, offset=4 * n), off, ledgers
        if cached.found.all():
            off = np.zeros(n + 1, np.int64)
            np.cumsum(cached.lengths, out=off[1:])
            return cached.values, off, cached.ledgers
        missing = np.flatnonzero(~cached.found).tolist()
        raw, ledgers = await self._fetch([subscribers[i] for i in missing])
        return (*cached.with_fetched(raw), {**cached.ledgers, **ledgers})

    async def _read_states(self, subscribers: Sequence[str]) -> tuple[
            tuple[Any, ...], np.ndarray, dict[str, dict[str, bytes]], list[dict[str, float]]]:
        """:meth:`_read`, decoded (``decode_states``), with every attributes map."""
        src, off, ledgers = await self._read(subscribers)
        try:
            decoded = decode_states(src, np.diff(off))
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        return decoded, src, ledgers, _attributes(src, decoded[-2], off)

    def remember(self, staged: BatchFeatures, entries: dict[str, dict[str, Any]]) -> None:
        """Record a committed batch in the cache: its stored values (``staged.staged``) and
        its cooldown entries (as read, updated by the batch's ``entries``)."""
        self.cache.put(staged.generation, staged.staged, entries, staged.ledgers)

    def forget(self, subscribers: Sequence[str]) -> None:
        """Drop cached subscribers whose keys were written by another path (a sweep)."""
        self.cache.discard(subscribers)

    async def stage(self, events: Sequence[Event]) -> BatchFeatures:
        """Apply a batch (idempotently) to the stored states, without writing them: the
        features after each applied event and the new values (``staged``)."""
        if not events:
            return _empty()
        subscribers, c = encode_batch(events)
        generation = self.cache.generation
        src, off, ledgers = await self._read(subscribers)
        codes, matrix, buf, value_off, blob_len, clock, profile_at, tail_at, bad = stage_values(
            src, off, c.sub, c.kind, c.ts, c.day, c.month, c.a, c.b, c.tenure, c.ids,
            self.config.lateness_ms)
        if bad >= 0:
            raise StoreError(f"state blob of version {src[off[bad]]}, {EXPECTED}")
        before = _attributes(src, tail_at, off)
        clocks = dict(zip(subscribers, np.maximum(clock, 0).tolist()))
        status = codes.tobytes().decode("ascii")
        rows = np.flatnonzero(codes == ord(APPLIED))
        attrs, changed, dropped = _replay(events, rows, c.sub, c.kind, before, profile_at,
                                          self.config.attrs)
        staged = StateValues(subscribers, buf.tobytes(), value_off, blob_len)
        previous = {}
        for k, (_, new) in changed.items():
            sid = subscribers[k]
            staged.replace_attributes(sid, _packer.encode(new))
            previous[sid] = before[k]
        pending = await self._pending(events, codes)
        return BatchFeatures(status, rows, matrix / DIVISOR, attrs, subscribers, ledgers,
                             pending, staged, clocks, generation, previous, dropped, c)

    async def _pending(self, events: Sequence[Event], codes: np.ndarray) -> list[bytes]:
        """The undelivered alerts of the batch's duplicate events (to be sent again)."""
        duplicates = np.flatnonzero(codes == ord(DUPLICATE)).tolist()
        return await self.pending_alerts([events[i] for i in duplicates])

    async def pending_alerts(self, events: Sequence[Event]) -> list[bytes]:
        """The alerts decided on ``events`` (applied before) and not yet delivered."""
        if not events:
            return []
        keys = self.config.keys
        pipe = self.redis.pipeline(transaction=False)
        for ev in events:
            pipe.hget(keys.ledger(ev.subscriber_id), "p:" + ev.event_id)
        return [alert for alert in await pipe.execute() if alert is not None]

    async def snapshot(self, subscriber_ids: Sequence[str], now_ms: int = 0) -> BatchFeatures:
        """Features of subscribers at ``max(now, their clock)``, without changing state.

        ``rows`` index the known subscribers in ``subscriber_ids``; ``ledgers`` are included,
        and ``staged`` holds their values as stored.
        """
        if not subscriber_ids:
            return _empty()
        decoded, src, ledgers, attrs = await self._read_states(subscriber_ids)
        states, tenure, _, _, _, e_ts, e_code, e_amt, e_off, tail_at, off = decoded
        month = int(months_of(np.array([now_ms]))[0])
        known, matrix = read_features(states, tenure, now_ms, month, e_ts, e_code, e_amt, e_off)
        rows = np.flatnonzero(known)
        present = "".join(APPLIED if k else "-" for k in known.tolist())
        clocks = {subscriber_ids[i]: t for i, t in zip(rows.tolist(), states[rows, MX].tolist())}
        stored = StateValues(subscriber_ids, src.tobytes(), off, tail_at - off[:-1])
        return BatchFeatures(present, rows, matrix / DIVISOR, [attrs[i] for i in rows.tolist()],
                             list(subscriber_ids), ledgers, [], stored, clocks=clocks)

    async def read(
        self, subscriber_ids: Sequence[str], now_ms: int | None = None
    ) -> dict[str, tuple[np.ndarray, dict[str, float]]]:
        """Features and attributes of known subscribers at ``max(now, their clock)``."""
        snap = await self.snapshot(subscriber_ids, now_ms or 0)
        return {snap.subscribers[i]: (snap.matrix[j], snap.attrs[j])
                for j, i in enumerate(snap.rows.tolist())}
