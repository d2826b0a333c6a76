"""The Redis feature store: one Lua call applies a whole micro-batch and returns its features.

Each subscriber's state is one compact cmsgpack blob (see ``churnwatch.keys``). The script
deduplicates by ``event_id``, rejects events older than the subscriber's clock minus the
allowed lateness, updates day and month buckets, prunes what no window can see any more, and
returns one feature row per applied event, computed right after that event (see
``features.schema``). The new states are *staged*: the batch's commit
(``alerting.ledger``) promotes them together with the batch's alert decisions.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from typing import Any, Sequence

import msgspec
import numpy as np

from churnwatch.errors import StoreError
from churnwatch.keys import Keys
from churnwatch.events import COMPLAINT_CATEGORIES, TYPE_CODE, Event
from features.schema import DAY_MS, DIVISOR, FEATURES, months_of, to_cents, to_milli

APPLIED, DUPLICATE, LATE = "A", "D", "L"
_CATEGORY = {name: code for code, name in enumerate(COMPLAINT_CATEGORIES)}
_packer = msgspec.msgpack.Encoder()


@dataclass(frozen=True)
class StoreConfig:
    """How long events may arrive late and how long idle state is kept."""

    lateness_ms: int = 7 * DAY_MS
    ttl_s: int = 400 * 86_400
    keys: Keys = Keys()


@dataclass(frozen=True)
class BatchFeatures:
    """The store's answer for one batch.

    ``status[i]`` is APPLIED, DUPLICATE or LATE for input event i; ``rows`` are the indices of
    the applied events, ``matrix[j]`` their features and ``attrs[j]`` their profile attributes.
    """

    status: str
    rows: np.ndarray
    matrix: np.ndarray
    attrs: list[dict[str, float]]
    subscribers: list[str]
    ledgers: dict[str, dict[str, bytes]]
    pending_alerts: list[bytes]


def _payload(ev: Event) -> tuple[Any, Any]:
    kind = ev.type
    if kind == "spend":
        return to_cents(ev.amount), 0
    if kind == "complaint":
        return _CATEGORY[ev.category or "other"], 0
    if kind == "usage":
        return to_milli(ev.data_mb), to_milli(ev.voice_min)
    if kind == "plan_change":
        return to_cents(ev.monthly_fee or 0.0), 0
    if kind == "profile":
        tenure = -1 if ev.tenure_months is None else ev.tenure_months
        return tenure, ev.attrs or {}
    return 0, 0


def encode_batch(events: Sequence[Event]) -> tuple[list[str], bytes]:
    """Distinct subscribers (first-seen order) and the packed events for the script."""
    index: dict[str, int] = {}
    subscribers: list[str] = []
    ts = np.fromiter((ev.ts for ev in events), dtype=np.int64, count=len(events))
    months = months_of(ts).tolist() if len(events) else []
    packed = []
    for i, ev in enumerate(events):
        k = index.get(ev.subscriber_id)
        if k is None:
            subscribers.append(ev.subscriber_id)
            k = index[ev.subscriber_id] = len(subscribers)
        a, b = _payload(ev)
        packed.append((k, ev.event_id, TYPE_CODE[ev.type], ev.ts, ev.ts // DAY_MS, months[i], a, b))
    return subscribers, _packer.encode(packed)


def decode_matrix(raw: bytes, rows: int) -> np.ndarray:
    """The script's packed float64 rows → a (rows × features) float matrix in units."""
    if rows == 0:
        return np.empty((0, len(FEATURES)), dtype=np.float64)
    values = np.frombuffer(raw, dtype="<f8")
    if values.size != rows * len(FEATURES):
        raise StoreError(f"feature script returned {values.size} values for {rows} rows")
    return values.reshape(rows, len(FEATURES)) / DIVISOR


def _attrs_before(raw: bytes) -> tuple[int, dict[str, float]]:
    ts, _, body = raw.partition(b"|")
    return int(ts), msgspec.msgpack.decode(body) or {}


def replay_attrs(
    events: Sequence[Event], status: str, rows: np.ndarray, subscribers: list[str],
    attrs_before: list[bytes],
) -> list[dict[str, float]]:
    """Profile attributes as of each applied event (latest profile by event time wins)."""
    current: dict[str, tuple[int, dict[str, float]]] = {}
    order = {sid: i for i, sid in enumerate(subscribers)}
    out: list[dict[str, float]] = []
    for i in rows.tolist():
        ev = events[i]
        sid = ev.subscriber_id
        if sid not in current:
            current[sid] = _attrs_before(attrs_before[order[sid]])
        if ev.type == "profile" and status[i] == APPLIED and ev.ts >= current[sid][0]:
            current[sid] = (ev.ts, ev.attrs or {})
        out.append(current[sid][1])
    return out


class FeatureStore:
    """Applies event batches to Redis and reads subscribers' features, one call per batch.

    ``redis`` is a ``redis.asyncio.Redis`` client created by the caller.
    """

    def __init__(self, redis: Any, config: StoreConfig = StoreConfig()) -> None:
        self.redis = redis
        self.config = config
        script = resources.files("features").joinpath("batch.lua").read_text()
        self._script = redis.register_script(script)

    def _keys(self, subscribers: Sequence[str]) -> list[str]:
        keys = self.config.keys
        out = []
        for sid in subscribers:
            out += [keys.state(sid), keys.stage(sid), keys.ledger(sid)]
        return out

    async def stage(self, events: Sequence[Event]) -> BatchFeatures:
        """Stage a batch (idempotently) and return the features after each applied event."""
        if not events:
            return BatchFeatures("", np.empty(0, np.int64), decode_matrix(b"", 0), [], [], {}, [])
        subscribers, packed = encode_batch(events)
        status_raw, matrix_raw, attrs_raw, ledgers_raw, pending = await self._script(
            keys=self._keys(subscribers),
            args=[packed, self.config.lateness_ms, self.config.ttl_s, ""],
        )
        status = status_raw.decode()
        if len(status) != len(events):
            raise StoreError(f"feature script returned {len(status)} statuses for {len(events)}")
        rows = np.flatnonzero(np.frombuffer(status_raw, dtype=np.uint8) == ord(APPLIED))
        matrix = decode_matrix(matrix_raw, len(rows))
        attrs = replay_attrs(events, status, rows, subscribers, attrs_raw)
        ledgers = {sid: {e[k].decode(): e[k + 1] for k in range(0, len(e), 2)}
                   for sid, e in zip(subscribers, ledgers_raw) if e}
        return BatchFeatures(status, rows, matrix, attrs, subscribers, ledgers, list(pending))

    async def snapshot(self, subscriber_ids: Sequence[str], now_ms: int = 0) -> BatchFeatures:
        """Features of subscribers at ``max(now, their clock)``, without changing state.

        ``rows`` index the known subscribers in ``subscriber_ids``; ``ledgers`` are included.
        """
        if not subscriber_ids:
            return BatchFeatures("", np.empty(0, np.int64), decode_matrix(b"", 0), [], [], {}, [])
        override = f"{now_ms // DAY_MS}:{int(months_of(np.array([now_ms]))[0])}"
        present_raw, matrix_raw, attrs_raw, ledgers_raw, _ = await self._script(
            keys=self._keys(subscriber_ids),
            args=[_packer.encode([]), self.config.lateness_ms, self.config.ttl_s, override],
        )
        rows = np.flatnonzero(np.frombuffer(present_raw, dtype=np.uint8) == ord(APPLIED))
        ledgers = {sid: {e[k].decode(): e[k + 1] for k in range(0, len(e), 2)}
                   for sid, e in zip(subscriber_ids, ledgers_raw) if e}
        return BatchFeatures(present_raw.decode(), rows, decode_matrix(matrix_raw, len(rows)),
                             [_attrs_before(attrs_raw[i])[1] for i in rows.tolist()],
                             list(subscriber_ids), ledgers, [])

    async def read(
        self, subscriber_ids: Sequence[str], now_ms: int | None = None
    ) -> dict[str, tuple[np.ndarray, dict[str, float]]]:
        """Features and attributes of known subscribers at ``max(now, their clock)``."""
        snap = await self.snapshot(subscriber_ids, now_ms or 0)
        return {snap.subscribers[i]: (snap.matrix[j], snap.attrs[j])
                for j, i in enumerate(snap.rows.tolist())}
