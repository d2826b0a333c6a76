"""Closing the loop: `outcome` events say what a retention action achieved.

Each outcome (accepted / declined / no_contact) is attributed to the alert it answers — its
rules, segment and actions, found in the subscriber's recent alerts — and counted in one
Redis hash shared by all workers, so the retention rate per rule, segment and action survives
restarts. The operators judged their flow by the share of high-risk customers retained (60 %).
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
                 registry: CollectorRegistry | None = None) -> None:
        self.redis = redis
        self.keys = keys
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
        self.unmatched = 0

    async def record(self, outcomes: Sequence[Event]) -> int:
        """Count applied outcome events; returns how many matched a known alert."""
        if not outcomes:
            return 0
        pipe = self.redis.pipeline(transaction=False)
        for ev in outcomes:
            pipe.lrange(self.keys.alerts(ev.subscriber_id), 0, -1)
        recent = await pipe.execute()
        pipe = self.redis.pipeline(transaction=False)
        matched = 0
        for ev, alerts in zip(outcomes, recent):
            alert = next((a for a in map(orjson.loads, alerts)
                          if a["alert_id"] == ev.alert_id), None)
            if alert is None:
                self.unmatched += 1
                continue
            matched += 1
            self._results.labels(ev.result).inc()
            for rule in alert["rules"]:
                for action in alert["actions"] or [{"id": "none"}]:
                    field = f"{rule}|{alert['segment']}|{action['id']}|{ev.result}"
                    pipe.hincrby(self.key, field, 1)
                    self._counter.labels(ev.result, rule, alert["segment"], action["id"]).inc()
        if matched:
            await pipe.execute()
        return matched

    async def rates(self) -> list[RetentionRate]:
        """Outcome counts and retention rate per (rule, segment, action)."""
        raw = await self.redis.hgetall(self.key)
        table: dict[tuple[str, str, str], dict[str, int]] = {}
        for field, count in raw.items():
            rule, segment, action, result = field.decode().split("|")
            table.setdefault((rule, segment, action), dict.fromkeys(OUTCOME_RESULTS, 0))[result] = int(count)
        return [RetentionRate(*k, **v) for k, v in sorted(table.items())]
