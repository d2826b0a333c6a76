"""Closing the loop: `outcome` events say what a retention action achieved.

Each outcome (accepted / declined / no_contact) is attributed to the alert it answers — its
rules, segment and actions, found in the subscriber's recent alerts — and counted in one
Redis hash shared by all workers, so the retention rate per rule, segment and action survives
restarts. The operators judged their flow by the share of high-risk customers retained (60 %).

One outcome per (alert, action): the first outcome event of an alert claims each of its
actions in the subscriber's alert ledger (field ``o:<alert_id>|<action>`` = the event's id,
``HSETNX``); a later outcome event for the same alert, whatever its id, result or source (the
web page, the HTTP ingest, Kafka), is a duplicate: not counted, only tallied in
``churnwatch_outcome_duplicates_total``. The claims expire with the ledger. A retried
``record`` of the same events counts the claims it owns (same event id) again, so a Redis
error between claiming and counting loses nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter

from churnwatch.core.events import OUTCOME_RESULTS, Event
from churnwatch.core.keys import Keys


@dataclass(frozen=True)
class RetentionRate:
    rule: str
    segment: str
    action: str
    accepted: int
    declined: int
    no_contact: int

    @property
    def rate(self) -> float | None:
        """Accepted among the outcomes where the customer was reached."""
        reached = self.accepted + self.declined
        return self.accepted / reached if reached else None


class OutcomeTracker:
    """Attributes outcome events to their alerts and keeps the counts in Redis."""

    def __init__(self, redis: Any, keys: Keys = Keys(),
                 registry: CollectorRegistry | None = None, ttl_s: int = 400 * 86_400) -> None:
        self.redis = redis
        self.keys = keys
        self.ttl_s = ttl_s
        self.key = f"{keys.prefix}:outcomes"
        registry = registry or CollectorRegistry()
        self._counter = Counter("churnwatch_outcomes", "Retention outcomes by result, rule, "
                                "segment and action", ["result", "rule", "segment", "action"],
                                registry=registry)
        self._results = Counter("churnwatch_action_outcomes", "Outcome events matched to their "
                                "alert, by result; retention rate = accepted / (accepted + "
                                "declined)", ["result"], registry=registry)
        for result in OUTCOME_RESULTS:
            self._results.labels(result)
        self._duplicates = Counter("churnwatch_outcome_duplicates", "Outcome events for an "
                                   "(alert, action) that already had one: not counted",
                                   registry=registry)
        self.unmatched = 0
        self.duplicates = 0

    async def record(self, outcomes: Sequence[Event]) -> int:
        """Count applied outcome events; returns how many matched a known alert."""
        if not outcomes:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for ev in outcomes:
            pipe.lrange(self.keys.alerts(ev.subscriber_id), 0, -1)
        recent = await pipe.execute()
        found = []
        for ev, alerts in zip(outcomes, recent):
            alert = next((a for a in map(orjson.loads, alerts)
                          if a["alert_id"] == ev.alert_id), None)
            if alert is None:
                self.unmatched += 1
            else:
                found.append((ev, alert))
        if not found:
            return 0
        owned = await self._claim(found)
        pipe = self.redis.pipeline(transaction=True)  # one key: one slot, all or nothing
        counted = 0
        for (ev, alert), actions in zip(found, owned):
            if not actions:
                self.duplicates += 1
                self._duplicates.inc()
                continue
            counted += 1
            self._results.labels(ev.result).inc()
            for rule in alert["rules"]:
                for action in actions:
                    field = f"{rule}|{alert['segment']}|{action}|{ev.result}"
                    pipe.hincrby(self.key, field, 1)
                    self._counter.labels(ev.result, rule, alert["segment"], action).inc()
        if counted:
            await pipe.execute()
        return len(found)

    async def _claim(self, found: Sequence[tuple[Event, dict[str, Any]]]) -> list[list[str]]:
        """Per (outcome, alert): the alert's actions this outcome owns (first claim wins)."""
        pipe = self.redis.pipeline(transaction=False)
        asked: list[list[str]] = []
        for ev, alert in found:
            ledger = self.keys.ledger(ev.subscriber_id)
            actions = [a["id"] for a in alert["actions"]] or ["none"]
            for action in actions:
                field = f"o:{alert['alert_id']}|{action}"
                pipe.hsetnx(ledger, field, ev.event_id)
                pipe.hget(ledger, field)
            pipe.expire(ledger, self.ttl_s)
            asked.append(actions)
        replies = iter(await pipe.execute())
        owned = []
        for (ev, _), actions in zip(found, asked):
            mine = []
            for action in actions:
                next(replies)
                if (next(replies) or b"").decode() == ev.event_id:
                    mine.append(action)
            next(replies)  # expire
            owned.append(mine)
        return owned

    async def rates(self) -> list[RetentionRate]:
        """Outcome counts and retention rate per (rule, segment, action)."""
        raw = await self.redis.hgetall(self.key)
        table: dict[tuple[str, str, str], dict[str, int]] = {}
        for field, count in raw.items():
            rule, segment, action, result = field.decode().split("|")
            table.setdefault((rule, segment, action), dict.fromkeys(OUTCOME_RESULTS, 0))[result] = int(count)
        return [RetentionRate(*k, **v) for k, v in sorted(table.items())]
