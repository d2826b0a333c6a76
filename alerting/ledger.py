"""The batch commit and the alert ledger in Redis.

``commit`` stores a batch's new feature states (the blobs ``FeatureStore.stage`` returned) and
records its cooldown entries and decided alerts (as *pending*) in one atomic script, so a crash
at any point either loses the whole batch's effects (and the replay redoes them) or none of
them. ``mark_delivered`` moves an alert from pending to the subscriber's recent alerts once
every sink has it; a replayed duplicate event gets its still-pending alert back from
``FeatureStore.stage``, to be sent again. On a Redis Cluster each step runs as one script
per node (``churnwatch.script_router``); every subscriber's effects stay in one script.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import msgspec
import numpy as np

from churnwatch.keys import Keys
from churnwatch.script_router import ScriptRouter

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
        self.router = ScriptRouter(redis)
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
        items: dict[str, tuple[list[str], list[str]]] = {}
        for sid in set(entries).union(pending) if entries or pending else ():
            flat_entries = [_text(x) for kv in entries.get(sid, {}).items() for x in kv]
            flat_pending = [_text(x) for kv in pending.get(sid, ()) for x in kv]
            if flat_entries or flat_pending:
                items[sid] = (flat_entries, flat_pending)
        touched = [sid for sid in subscribers if states.get(sid) or sid in items]
        names = [self.keys.state(sid) for sid in touched]
        calls = []
        for node, members in await self.router.split(names):
            if len(members) == len(touched):  # one group (a single Redis): no re-indexing
                group, group_names = touched, names
            else:
                group, group_names = [touched[i] for i in members], [names[i] for i in members]
            blobs = [blob for sid in group if (blob := states.get(sid))]
            keys = [name for sid, name in zip(group, group_names) if states.get(sid)]
            keyed = [sid for sid in group if sid in items]
            keys += [self.keys.ledger(sid) for sid in keyed]
            packed = np.fromiter(map(len, blobs), "<u4", len(blobs)).tobytes() + b"".join(blobs)
            calls.append((node, keys, ["commit", _packer.encode([items[sid] for sid in keyed]),
                                       self.ttl_s, packed,
                                       "set" if self.router.cluster else "mset"]))
        if calls:
            await self.router.run(self._script, calls, pipe=pipe)

    async def mark_delivered(self, alerts: Sequence[tuple[str, str, bytes]]) -> None:
        """Record (subscriber_id, event_id, alert_json) as delivered to every sink."""
        if not alerts:
            return
        calls = []
        for node, members in await self.router.split([self.keys.state(sid)
                                                      for sid, _, _ in alerts]):
            keys: list[str] = []
            for i in members:
                keys += [self.keys.ledger(alerts[i][0]), self.keys.alerts(alerts[i][0])]
            items = [(alerts[i][1], _text(alerts[i][2])) for i in members]
            calls.append((node, keys, ["mark", _packer.encode(items), self.ttl_s, self.recent]))
        await self.router.run(self._script, calls)

    async def recent_alerts(self, subscriber_id: str) -> list[bytes]:
        """The subscriber's most recent delivered alerts, newest first (JSON)."""
        return await self.redis.lrange(self.keys.alerts(subscriber_id), 0, self.recent - 1)
