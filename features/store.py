"""The feature store: Redis keeps one compact blob per subscriber; the worker computes.

``stage`` reads the batch's subscribers' state blobs and alert-ledger cooldown entries in one
round trip (``read.lua``), decodes them (``features.codec``), applies the batch with the
numba kernel (``features.kernel``: lateness against the subscriber's clock, dedup by
``event_id``, day and month buckets, a feature row right after each applied event, see
``features.schema``) and encodes the new blobs. It writes nothing: the new blobs are returned
as ``staged`` and the batch's commit (``alerting.ledger``) stores them atomically with the
batch's alert decisions. Only a batch with duplicates costs a second, read-only round trip
(their still-pending alerts). On a Redis Cluster the read is one script per node, sent
concurrently (``churnwatch.script_router``).

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

from churnwatch.errors import StoreError
from churnwatch.events import Event
from churnwatch.keys import Keys
from churnwatch.script_router import ScriptRouter
from features.cache import StateCache
from features.codec import decode_states, encode_states, split_blobs
from features.columns import encode_batch
from features.extension import frame, split
from features.kernel import AT, MX, apply_batch, read_features
from features.schema import DAY_MS, DIVISOR, FEATURES, months_of

__all__ = ["APPLIED", "DUPLICATE", "LATE", "BatchFeatures", "FeatureStore", "StoreConfig",
           "encode_batch", "replay_attrs", "warm_up"]

APPLIED, DUPLICATE, LATE = "A", "D", "L"
_packer = msgspec.msgpack.Encoder()
_unpack = msgspec.msgpack.Decoder()
_EMPTY_ATTRS = _packer.encode({})


@dataclass(frozen=True)
class StoreConfig:
    """How long events may arrive late and how long idle state is kept (``ttl_s``: after the
    subscriber's last event, in event time, see ``Pipeline.sweep``; after a churn event, in
    wall-clock time, as a key expiry)."""

    lateness_ms: int = 7 * DAY_MS
    ttl_s: int = 400 * 86_400
    keys: Keys = Keys()


@dataclass(frozen=True)
class BatchFeatures:
    """The store's answer for one batch.

    ``status[i]`` is APPLIED, DUPLICATE or LATE for input event i; ``rows`` are the indices of
    the applied events, ``matrix[j]`` their features and ``attrs[j]`` their profile attributes.
    ``staged`` holds each subscriber's new state blob, for the batch's commit. ``parts`` holds
    its pieces (codec blob, extension body, attributes; see ``features.extension``): another
    layer may replace the extension with ``features.extension.frame`` before the commit. From
    :meth:`FeatureStore.snapshot`, ``parts`` has an empty codec blob.
    """

    status: str
    rows: np.ndarray
    matrix: np.ndarray
    attrs: list[dict[str, float]]
    subscribers: list[str]
    ledgers: dict[str, dict[str, bytes]]
    pending_alerts: list[bytes]
    staged: dict[str, bytes] = field(default_factory=dict)
    parts: dict[str, tuple[bytes, bytes, bytes]] = field(default_factory=dict)
    clocks: dict[str, int] = field(default_factory=dict)  # clocks before the batch (0: new)
    generation: int = -1  # the state cache's generation when the batch was read
    # attributes before the batch of the subscribers whose attributes the batch changed
    previous_attrs: dict[str, dict[str, float]] = field(default_factory=dict)
    # every subscriber's attributes after the batch (the decoded tail of ``staged``)
    attrs_after: dict[str, dict[str, float]] = field(default_factory=dict)


def _empty() -> BatchFeatures:
    return BatchFeatures("", np.empty(0, np.int64), np.empty((0, len(FEATURES))), [], [], {}, [])


def _attrs(raw: bytes) -> dict[str, float]:
    raw = split(raw)[1]
    return _unpack.decode(raw) if raw else {}


def replay_attrs(
    events: Sequence[Event], status: str, rows: np.ndarray, subscribers: list[str],
    attrs_before: list[tuple[int, dict[str, float]]],
) -> list[dict[str, float]]:
    """Profile attributes as of each applied event (latest profile by event time wins).

    ``attrs_before[k]`` is (profile event time, attributes) of ``subscribers[k]`` before the
    batch."""
    return _replay(events, status, rows, subscribers, attrs_before)[0]


def _replay(events: Sequence[Event], status: str, rows: np.ndarray, subscribers: list[str],
            attrs_before: list[tuple[int, dict[str, float]]],
            ) -> tuple[list[dict[str, float]], dict[str, tuple[int, dict[str, float]]]]:
    """:func:`replay_attrs`, plus each subscriber's attributes after the batch (only those of
    subscribers whose attributes changed)."""
    current: dict[str, tuple[int, dict[str, float]]] = {}
    changed: dict[str, tuple[int, dict[str, float]]] = {}
    order = {sid: i for i, sid in enumerate(subscribers)}
    out: list[dict[str, float]] = []
    for i in rows.tolist():
        ev = events[i]
        sid = ev.subscriber_id
        if sid not in current:
            current[sid] = attrs_before[order[sid]]
        if ev.type == "profile" and status[i] == APPLIED and ev.ts >= current[sid][0]:
            current[sid] = changed[sid] = (ev.ts, ev.attrs or {})
        out.append(current[sid][1])
    return out, changed


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
    """Compile the kernels (or load them from numba's cache) with a one-event batch."""
    ev = Event(event_id="warm-up", subscriber_id="warm-up", type="login", ts=DAY_MS * 20_000)
    subscribers, cols = encode_batch([ev])
    states, tenure, seen_hash, seen_ts, seen_off, _ = decode_states(b"", np.zeros(1, int))
    apply_batch(states, tenure, seen_hash, seen_ts, seen_off, cols.sub, cols.kind, cols.ts,
                cols.day, cols.month, cols.a, cols.b, cols.tenure, cols.ids, DAY_MS)
    buf, off = encode_states(states, tenure.view(np.int64), seen_hash, seen_ts, seen_off)
    decode_states(buf.tobytes(), np.diff(off))
    read_features(states, tenure, 0, 0)


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
            tuple[np.ndarray, ...], dict[str, dict[str, bytes]], list[dict[str, float] | None]]:
        """The subscribers' decoded states and cooldown entries: cached ones from the cache,
        the others from Redis; and the attributes the cache holds decoded (None: decode
        them from the state's tail)."""
        n = len(subscribers)
        found = self.cache.get(subscribers) if self.cache.capacity else [None] * n
        missing = [i for i, hit in enumerate(found) if hit is None]
        if len(missing) == n:
            blobs, ledgers = await self._fetch(subscribers)
            known: list[dict[str, float] | None] = [None] * n
        else:
            ledgers = {sid: hit[1] for sid, hit in zip(subscribers, found)
                       if hit is not None and hit[1]}
            pieces = [b"" if hit is None else hit[0] for hit in found]
            known = [None if hit is None else hit[2] for hit in found]
            if missing:
                raw, fetched = await self._fetch([subscribers[i] for i in missing])
                ledgers.update(fetched)
                sizes = np.frombuffer(raw, "<u4", len(missing))
                ends = 4 * len(missing) + np.cumsum(sizes)
                for i, end, size in zip(missing, ends.tolist(), sizes.tolist()):
                    pieces[i] = raw[end - size:end]
            blobs = np.fromiter(map(len, pieces), "<u4", n).tobytes() + b"".join(pieces)
        try:
            decoded = decode_states(blobs[4 * n:], np.frombuffer(blobs, "<u4", n).astype(int))
        except ValueError as exc:
            raise StoreError(str(exc)) from None
        return decoded, ledgers, known

    def remember(self, staged: BatchFeatures, entries: dict[str, dict[str, Any]]) -> None:
        """Record a committed batch in the cache: its stored values (``staged.staged``) and
        its cooldown entries (as read, updated by the batch's ``entries``)."""
        self.cache.put(staged.generation, staged.staged, entries, staged.ledgers,
                       attrs=staged.attrs_after)

    def forget(self, subscribers: Sequence[str]) -> None:
        """Drop cached subscribers whose keys were written by another path (a sweep)."""
        self.cache.discard(subscribers)

    async def stage(self, events: Sequence[Event]) -> BatchFeatures:
        """Apply a batch (idempotently) to the stored states, without writing them: the
        features after each applied event and the new blobs (``staged``)."""
        if not events:
            return _empty()
        subscribers, c = encode_batch(events)
        generation = self.cache.generation
        (states, tenure, seen_hash, seen_ts, seen_off, attrs_raw), ledgers, known = \
            await self._read(subscribers)
        before = [(t, _attrs(raw) if a is None else a)
                  for t, raw, a in zip(states[:, AT].tolist(), attrs_raw, known)]
        clocks = {sid: max(0, t) for sid, t in zip(subscribers, states[:, MX].tolist())}
        codes, matrix, kept_hash, kept_ts, kept_off = apply_batch(
            states, tenure, seen_hash, seen_ts, seen_off, c.sub, c.kind, c.ts, c.day, c.month,
            c.a, c.b, c.tenure, c.ids, self.config.lateness_ms)
        status = codes.tobytes().decode("ascii")
        rows = np.flatnonzero(codes == ord(APPLIED))
        attrs, changed = _replay(events, status, rows, subscribers, before)
        blobs = split_blobs(*encode_states(states, tenure.view(np.int64), kept_hash, kept_ts,
                                           kept_off))
        staged, parts = {}, {}
        for sid, blob, raw in zip(subscribers, blobs, attrs_raw):
            new = changed.get(sid)
            ext, old = split(raw)
            if new is None and old:  # the tail as stored: framed extension, attributes
                parts[sid] = (blob, ext, old)
                staged[sid] = blob + raw
                continue
            packed = _packer.encode(new[1]) if new else _EMPTY_ATTRS
            parts[sid] = (blob, ext, packed)
            staged[sid] = blob + frame(ext) + packed
        pending = await self._pending(events, codes)
        order = {sid: k for k, sid in enumerate(subscribers)}
        previous = {sid: before[order[sid]][1] for sid in changed}
        after = {sid: b[1] for sid, b in zip(subscribers, before)}
        after.update((sid, new[1]) for sid, new in changed.items())
        return BatchFeatures(status, rows, matrix / DIVISOR, attrs, subscribers, ledgers,
                             pending, staged, parts, clocks, generation, previous, after)

    async def _pending(self, events: Sequence[Event], codes: np.ndarray) -> list[bytes]:
        """The undelivered alerts of the batch's duplicate events (to be sent again)."""
        duplicates = np.flatnonzero(codes == ord(DUPLICATE)).tolist()
        if not duplicates:
            return []
        keys = self.config.keys
        pipe = self.redis.pipeline(transaction=False)
        for i in duplicates:
            pipe.hget(keys.ledger(events[i].subscriber_id), "p:" + events[i].event_id)
        return [alert for alert in await pipe.execute() if alert is not None]

    async def snapshot(self, subscriber_ids: Sequence[str], now_ms: int = 0) -> BatchFeatures:
        """Features of subscribers at ``max(now, their clock)``, without changing state.

        ``rows`` index the known subscribers in ``subscriber_ids``; ``ledgers`` are included.
        """
        if not subscriber_ids:
            return _empty()
        (states, tenure, _, _, _, attrs_raw), ledgers, cached_attrs = \
            await self._read(subscriber_ids)
        month = int(months_of(np.array([now_ms]))[0])
        known, matrix = read_features(states, tenure, now_ms // DAY_MS, month)
        rows = np.flatnonzero(known)
        present = "".join(APPLIED if k else "-" for k in known.tolist())
        parts = {subscriber_ids[i]: (b"", *split(attrs_raw[i])) for i in rows.tolist()}
        clocks = {subscriber_ids[i]: t for i, t in zip(rows.tolist(), states[rows, MX].tolist())}
        return BatchFeatures(present, rows, matrix / DIVISOR,
                             [_attrs(attrs_raw[i]) if cached_attrs[i] is None
                              else cached_attrs[i] for i in rows.tolist()],
                             list(subscriber_ids), ledgers, [], parts=parts, clocks=clocks)

    async def read(
        self, subscriber_ids: Sequence[str], now_ms: int | None = None
    ) -> dict[str, tuple[np.ndarray, dict[str, float]]]:
        """Features and attributes of known subscribers at ``max(now, their clock)``."""
        snap = await self.snapshot(subscriber_ids, now_ms or 0)
        return {snap.subscribers[i]: (snap.matrix[j], snap.attrs[j])
                for j, i in enumerate(snap.rows.tolist())}
