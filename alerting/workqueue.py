"""Per-team work queues of retention actions on Redis Streams.

Every action of an alert becomes one entry of its owning team's stream ``<prefix>:queue:<team>``
with what the team needs to route and act on it: ``alert_id``, ``action_id``, ``team``,
``deadline_ms`` (``detected_at`` plus the action's deadline), ``subscriber_id``,
``event_id``, ``severity``, ``detected_at`` and ``action`` (the action's JSON: channel,
parameters, description, ``not_before``). The whole alert (reasons, score, the other
actions) is not copied into every entry (it was ~2 KB an action, 7 teams × 100k entries
≈ 1.5 GB): :meth:`TeamQueues.alert` reads it from where the worker keeps it, the
subscriber's alert ledger (pending) or recent alerts (delivered), and churn.alerts has it
too. An entry is added at most once per (alert_id, action_id): a guard key
``<prefix>:{<stream>}:action:<alert_id>:<action_id>`` is checked and set by the same Lua call
as the XADD, so neither a re-send nor a crash between them can duplicate or lose an entry.
The guard's hash tag is the stream's name, so both keys live in one Redis Cluster slot.

Team tools consume a stream with a consumer group: :meth:`TeamQueues.claim` new entries,
:meth:`TeamQueues.ack` them once handled, and :meth:`TeamQueues.reclaim_stuck` entries whose
consumer died before acking (XAUTOCLAIM, Redis >= 6.2).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from alerting.alert import Action, Alert, to_json
from alerting.sinks.base import SinkReport, actions_of
from churnwatch.core.errors import RedisCommandError
from churnwatch.core.keys import Keys
from churnwatch.core.units import HOUR_MS
from churnwatch.infra.redis.errors import map_redis_errors
from churnwatch.infra.redis.script_router import ScriptRouter

FIELDS = ("alert_id", "action_id", "team", "deadline_ms", "subscriber_id", "event_id",
          "severity", "detected_at", "action")

# KEYS[1] = team stream, KEYS[1 + i] = guard of entry i; ARGV = maxlen, guard TTL seconds,
# then 9 values per entry, in the order of FIELDS.
# XADD comes before SET: if it fails, no guard is left behind to block a re-send.
_ENQUEUE = """
local added = 0
for i = 2, #KEYS do
  if redis.call("EXISTS", KEYS[i]) == 0 then
    local a = 3 + (i - 2) * 9
    redis.call("XADD", KEYS[1], "MAXLEN", "~", ARGV[1], "*",
               "alert_id", ARGV[a], "action_id", ARGV[a + 1], "team", ARGV[a + 2],
               "deadline_ms", ARGV[a + 3], "subscriber_id", ARGV[a + 4],
               "event_id", ARGV[a + 5], "severity", ARGV[a + 6], "detected_at", ARGV[a + 7],
               "action", ARGV[a + 8])
    redis.call("SET", KEYS[i], "1", "EX", ARGV[2])
    added = added + 1
  end
end
return added
"""


@dataclass(frozen=True)
class WorkItem:
    """One queued action, as a consumer reads it; ``id`` is the stream entry id to ack."""

    id: str
    alert_id: str
    action_id: str
    team: str
    deadline_ms: int
    subscriber_id: str
    event_id: str
    severity: str
    detected_at: int
    action: Action


class _Id(msgspec.Struct):
    alert_id: str


_action = msgspec.json.Decoder(Action)
_alert_id = msgspec.json.Decoder(_Id)


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _item(entry_id: str | bytes, fields: dict[Any, Any]) -> WorkItem:
    f = {_text(k): v for k, v in fields.items()}
    return WorkItem(_text(entry_id), _text(f["alert_id"]), _text(f["action_id"]),
                    _text(f["team"]), int(f["deadline_ms"]), _text(f["subscriber_id"]),
                    _text(f["event_id"]), _text(f["severity"]), int(f["detected_at"]),
                    _action.decode(f["action"]))


class TeamQueues:
    """Producer and consumer sides of the team streams, over a ``redis.asyncio`` client
    (default RESP2 response parsing); the producer side is an
    :class:`~alerting.sinks.AlertSink` (:meth:`write`)."""

    name = "work_queue"
    waits_out_redis = True

    def __init__(self, redis: Any, prefix: str = "cw", maxlen: int = 100_000,
                 guard_ttl_s: int = 30 * 86_400) -> None:
        self.redis = redis
        self.prefix = prefix
        self.keys = Keys(prefix)
        self.maxlen = maxlen
        self.guard_ttl_s = guard_ttl_s
        self._enqueue = redis.register_script(_ENQUEUE)
        self._router = ScriptRouter(redis)

    def stream(self, team: str) -> str:
        """The team's stream key."""
        return f"{self.prefix}:queue:{team}"

    def guard(self, team: str, alert_id: str, action_id: str) -> str:
        """The key recording that (alert_id, action_id) is queued."""
        return f"{self.prefix}:{{{self.stream(team)}}}:action:{alert_id}:{action_id}"

    async def write(self, alerts: Sequence[Alert], payloads: Sequence[bytes]) -> SinkReport:
        """Queue every action once; actions already queued count as duplicates."""
        added = await self.send(alerts, payloads)
        return SinkReport(sent=added, duplicate=actions_of(alerts) - added)

    async def send(self, alerts: Sequence[Alert], payloads: Sequence[bytes] = ()) -> int:
        """Queue every action of every alert not queued before; returns how many entries
        were added. One script per team, one round trip. (``payloads``, the alerts as JSON,
        are not needed: entries hold the action, not the alert.)"""
        per_team: dict[str, tuple[list[str], list[Any]]] = defaultdict(lambda: ([], []))
        for alert in alerts:
            for action in alert.actions:
                keys, args = per_team[action.team]
                keys.append(self.guard(action.team, alert.alert_id, action.id))
                deadline = alert.detected_at + round(action.deadline_hours * HOUR_MS)
                args += [alert.alert_id, action.id, action.team, deadline, alert.subscriber_id,
                         alert.event_id, alert.severity, alert.detected_at, to_json(action)]
        if not per_team:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for team, (keys, args) in per_team.items():
            await self._router.queue(pipe, self._enqueue, [self.stream(team), *keys],
                                     [self.maxlen, self.guard_ttl_s, *args])
        return sum(await pipe.execute())

    async def alert(self, item: WorkItem) -> bytes | None:
        """The whole alert of ``item`` (JSON), from the subscriber's alert ledger while its
        delivery is under way, else from the subscriber's recent alerts; None once it is
        gone from both (more than the ledger's ``recent`` newer alerts of the subscriber,
        or expired; a storm-held alert released by an operator is published under a new id
        and kept in neither): churn.alerts keeps every alert. One transaction on the
        subscriber's keys (one slot), so a delivery moving it between them is never missed."""
        pipe = self.redis.pipeline(transaction=True)
        pipe.hget(self.keys.ledger(item.subscriber_id), f"p:{item.event_id}")
        pipe.lrange(self.keys.alerts(item.subscriber_id), 0, -1)
        pending, recent = await pipe.execute()
        for raw in ([pending] if pending else []) + list(recent):
            if _alert_id.decode(raw).alert_id == item.alert_id:
                return raw if isinstance(raw, bytes) else raw.encode()
        return None

    async def ensure_group(self, team: str, group: str, start: str = "0") -> None:
        """Create the consumer group (and the stream) if missing; by default the group also
        receives entries queued before it existed."""
        try:
            with map_redis_errors():
                await self.redis.xgroup_create(self.stream(team), group, id=start,
                                               mkstream=True)
        except RedisCommandError as exc:
            if "BUSYGROUP" not in str(exc):
                raise

    async def claim(self, team: str, group: str, consumer: str, count: int = 10,
                    block_ms: int | None = None) -> list[WorkItem]:
        """Up to ``count`` entries never delivered to the group, now pending for ``consumer``;
        waits up to ``block_ms`` for some (None: no wait)."""
        response = await self.redis.xreadgroup(group, consumer, {self.stream(team): ">"},
                                               count=count, block=block_ms)
        return [_item(i, f) for _, entries in response or () for i, f in entries]

    async def ack(self, team: str, group: str, ids: Sequence[str]) -> int:
        """Mark entries handled; returns how many were pending."""
        if not ids:
            return 0
        return await self.redis.xack(self.stream(team), group, *ids)

    async def reclaim_stuck(self, team: str, group: str, consumer: str, min_idle_ms: int,
                            count: int = 100) -> list[WorkItem]:
        """Take over up to ``count`` entries pending for at least ``min_idle_ms`` with any
        consumer (one that died before acking), now pending for ``consumer``."""
        items: list[WorkItem] = []
        cursor: str | bytes = "0-0"
        while len(items) < count:
            response = await self.redis.xautoclaim(self.stream(team), group, consumer,
                                                   min_idle_ms, cursor, count=count - len(items))
            cursor, entries = response[0], response[1]
            items += [_item(i, f) for i, f in entries if i is not None]  # None: trimmed
            if _text(cursor) == "0-0":
                break
        return items

    async def pending(self, team: str, group: str) -> int:
        """How many entries the group has delivered but not yet acked."""
        return (await self.redis.xpending(self.stream(team), group))["pending"]
