"""The batch commit and the alert ledger in Redis.

``writes`` describes how to store a batch's new feature states (the values ``FeatureStore.stage`` returned)
and records its cooldown entries and decided alerts (as *pending*) atomically, so a crash at
any point either loses the whole batch's effects (and the replay redoes them) or none of
them: on a single Redis one ``MULTI``/``EXEC`` of an ``MSET`` and the ledger script, on a
Redis Cluster one script per node (``churnwatch.infra.redis.script_router``; every subscriber's effects
stay in one script). ``delivered_writes`` move an alert from pending to the subscriber's
recent alerts once every sink has it; a replayed duplicate event gets its still-pending
alert back from ``FeatureStore.stage``, to be sent again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any

import msgspec

from churnwatch.core.keys import Keys
from churnwatch.infra.redis.connect import sends_packed
from churnwatch.infra.redis.script_router import ScriptRouter
from churnwatch.infra.redis.writes import Command, ScriptCalls, Write
from features.values import StateValues

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

    async def writes(
        self,
        entries: Mapping[str, Mapping[str, bytes]],
        pending: Mapping[str, Sequence[tuple[str, bytes]]],
        states: StateValues | Mapping[str, bytes] | None = None,
    ) -> list[Write]:
        """The writes storing the new state values (``states``, e.g. ``BatchFeatures.staged``;
        empty ones are skipped) and the subscribers' new cooldown ``entries`` and ``pending``
        alerts. On a single Redis they must run in one transaction (``MULTI``/``EXEC``) for
        the states and the decisions to be stored at once: an ``MSET`` of the states
        (redis-server spends about half the time of the script's per-value Lua strings) and
        the ledger script; on a cluster one script call per node holds both."""
        if states is None:
            values = StateValues.of({})
        else:
            values = states if isinstance(states, StateValues) else StateValues.of(states)
        items: dict[str, tuple[list[str], list[str]]] = {}
        for sid in set(entries).union(pending) if entries or pending else ():
            flat_entries = [_text(x) for kv in entries.get(sid, {}).items() for x in kv]
            flat_pending = [_text(x) for kv in pending.get(sid, ()) for x in kv]
            if flat_entries or flat_pending:
                items[sid] = (flat_entries, flat_pending)
        if not self.router.cluster:
            return self._writes_single(values, items)
        subscribers = values.subscribers
        others = [sid for sid in items if sid not in values]  # decisions, no new value
        everyone = subscribers + others
        calls = []
        for node, members in await self.router.split(self.keys.states(everyone)):
            chosen, packed = values.packed([i for i in members if i < len(subscribers)])
            keyed = [everyone[i] for i in members if everyone[i] in items]
            if chosen or keyed:
                calls.append((node, self.keys.states([subscribers[i] for i in chosen])
                              + [self.keys.ledger(sid) for sid in keyed],
                              self._args([items[sid] for sid in keyed], packed)))
        return [ScriptCalls(self.router, self._script, tuple(calls))] if calls else []

    def _writes_single(self, values: StateValues,
                       items: dict[str, tuple[list[str], list[str]]]) -> list[Write]:
        out: list[Write] = []
        if len(values):
            if sends_packed(self.redis):  # the whole command in one numba pass over the buffer
                out.append(Command("MSET", values.mset(self.keys.states(values.subscribers))))
            else:
                args = [x for sid, value in values.items() if value
                        for x in (self.keys.state(sid), value)]
                if args:
                    out.append(Command("MSET", *args))
        if items:
            out.append(ScriptCalls(self.router, self._script, (
                (None, [self.keys.ledger(sid) for sid in items],
                 self._args(list(items.values()), b"")),)))
        return out

    def _args(self, items: list[tuple[list[str], list[str]]], packed: bytes) -> list[Any]:
        return ["commit", _packer.encode(items), self.ttl_s, packed,
                "set" if self.router.cluster else "mset"]

    async def delivered_writes(self, alerts: Sequence[tuple[str, str, bytes]]) -> list[Write]:
        """The writes recording (subscriber_id, event_id, alert_json) as delivered to every
        sink: each alert moves from pending to the subscriber's recent alerts."""
        if not alerts:
            return []
        calls = []
        for node, members in await self.router.split([self.keys.state(sid)
                                                      for sid, _, _ in alerts]):
            keys: list[str] = []
            for i in members:
                keys += [self.keys.ledger(alerts[i][0]), self.keys.alerts(alerts[i][0])]
            items = [(alerts[i][1], _text(alerts[i][2])) for i in members]
            calls.append((node, keys, ["mark", _packer.encode(items), self.ttl_s, self.recent]))
        return [ScriptCalls(self.router, self._script, tuple(calls))]

    async def recent_alerts(self, subscriber_id: str) -> list[bytes]:
        """The subscriber's most recent delivered alerts, newest first (JSON)."""
        return await self.redis.lrange(self.keys.alerts(subscriber_id), 0, self.recent - 1)
