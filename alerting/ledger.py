"""The batch commit and the alert ledger in Redis.

``commit`` stores a batch's new feature states (the blobs ``FeatureStore.stage`` returned) and
records its cooldown entries and decided alerts (as *pending*) in one atomic script, so a crash
at any point either loses the whole batch's effects (and the replay redoes them) or none of
them. ``mark_delivered`` moves an alert from pending to the subscriber's recent alerts once
every sink has it; a replayed duplicate event gets its still-pending alert back from
``FeatureStore.stage``, to be sent again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import msgspec
import numpy as np

from churnwatch.keys import Keys

_packer = msgspec.msgpack.Encoder()


def _text(value: str | bytes) -> str:
    """Redis' Lua cmsgpack reads msgpack str, not bin: send text."""
    return value.decode() if isinstance(value, bytes) else value


class AlertLedger:
    """Commits batches and marks deliveries over a ``redis.asyncio`` client."""

    def __init__(self, redis: Any, keys: Keys = Keys(), ttl_s: int = 400 * 86_400,
                 recent: int = 20) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.recent = recent
        self._script = redis.register_script(
            resources.files("alerting").joinpath("ledger.lua").read_text())

    async def commit(
        self,
        subscribers: Sequence[str],
        entries: Mapping[str, Mapping[str, bytes]],
        pending: Mapping[str, Sequence[tuple[str, bytes]]],
        pipe: Any = None,
        states: Mapping[str, bytes] | None = None,
    ) -> None:
        """Store the new state blobs (``states``, e.g. ``BatchFeatures.staged``) of
        ``subscribers`` and record their new cooldown entries and alerts.

        With ``pipe`` (a redis pipeline) the script is only queued on it, to share its round
        trip; the caller executes the pipeline.
        """
        states = states or {}
        stored = [sid for sid in subscribers if states.get(sid)]
        keys = [self.keys.state(sid) for sid in stored]
        items = []
        for sid in subscribers:
            if sid not in entries and sid not in pending:
                continue
            flat_entries = [_text(x) for kv in entries.get(sid, {}).items() for x in kv]
            flat_pending = [_text(x) for kv in pending.get(sid, ()) for x in kv]
            if flat_entries or flat_pending:
                keys.append(self.keys.ledger(sid))
                items.append((flat_entries, flat_pending))
        if not keys:
            return
        blobs = [states[sid] for sid in stored]
        packed = np.fromiter(map(len, blobs), "<u4", len(blobs)).tobytes() + b"".join(blobs)
        await self._script(keys=keys, args=["commit", _packer.encode(items), self.ttl_s, packed],
                           client=pipe)

    async def mark_delivered(self, alerts: Sequence[tuple[str, str, bytes]]) -> None:
        """Record (subscriber_id, event_id, alert_json) as delivered to every sink."""
        if not alerts:
            return
        keys: list[str] = []
        for sid, _, _ in alerts:
            keys += [self.keys.ledger(sid), self.keys.alerts(sid)]
        items = [(event_id, _text(body)) for _, event_id, body in alerts]
        await self._script(keys=keys, args=["mark", _packer.encode(items), self.ttl_s, self.recent])

    async def recent_alerts(self, subscriber_id: str) -> list[bytes]:
        """The subscriber's most recent delivered alerts, newest first (JSON)."""
        return await self.redis.lrange(self.keys.alerts(subscriber_id), 0, self.recent - 1)
