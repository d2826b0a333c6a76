"""Storm protection: when one rule raises too many alerts in an event-time hour, hold actions.

A storm is usually a cause, not a churn wave (a network outage makes thousands complain at
once); calling every one of them would be wrong and costly. Past ``max_per_hour`` alerts of
a rule within one event-time hour, alerts still go out but their actions are held (listed in
``suppressed`` with reason ``storm hold``) and kept in Redis for a person to release or
discard; the first held alert of a (rule, hour) also raises one storm alert for the
retention-ops team. Counts are kept per worker (each sees its partitions' share), in event
time, so a replay holds the same alerts.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field

from alerting.alert import Action, Alert
from churnwatch.core.units import HOUR_MS

STORM_TEAM = "retention-ops"


@dataclass
class StormGuard:
    """Per (rule, event-time hour) alert counts; ``max_per_hour`` 0 turns protection off."""

    max_per_hour: int = 0
    counts: Counter[tuple[str, int]] = field(default_factory=Counter)

    def over(self, rules: list[str], ts: int, pending: Counter[tuple[str, int]]) -> list[str]:
        """Rules of an alert at ``ts`` that are past their hourly budget, counting ``pending``
        (this batch's alerts so far, not yet committed)."""
        if not self.max_per_hour:
            return []
        hour = ts // HOUR_MS
        return [r for r in rules
                if self.counts[(r, hour)] + pending[(r, hour)] >= self.max_per_hour]

    def commit(self, pending: Counter[tuple[str, int]]) -> None:
        """Count a batch's alerts once its effects are durable; forget hours long past."""
        self.counts.update(pending)
        if len(self.counts) > 10_000:
            newest = max(hour for _, hour in self.counts)
            for key in [k for k in self.counts if k[1] < newest - 48]:
                del self.counts[key]


def storm_alert(rule: str, ts: int, max_per_hour: int, now_ms: int, ruleset_version: str,
                model_version: str) -> Alert:
    """The one alert that tells retention ops a rule is storming in this hour."""
    hour = ts // HOUR_MS
    event_id = f"storm-{rule}-{hour}"
    return Alert(
        alert_id=hashlib.sha1(f"storm\x1f{rule}\x1f{hour}".encode()).hexdigest(),
        subscriber_id="*", ts=hour * HOUR_MS, event_id=event_id, severity="high", score=0.0,
        rules=[rule], segment="all", detected_at=now_ms, model_version=model_version,
        ruleset_version=ruleset_version,
        reasons=[{"kind": "storm", "rule": rule, "hour_start": hour * HOUR_MS,
                  "max_per_hour": max_per_hour}],
        actions=[Action("review_storm", STORM_TEAM, 2.0,
                        description="more alerts than the hourly budget: find the common "
                                    "cause, then release or discard the held actions "
                                    "(churnwatch storm release|discard RULE)")])


def released_copy(held: Alert) -> Alert:
    """The delivery of a released alert: same cause, a new id (receivers deduplicate by id and
    already have the held copy), its actions, and a reason saying it was released."""
    return Alert(**{**{f: getattr(held, f) for f in held.__struct_fields__},
                    "alert_id": hashlib.sha1(f"{held.alert_id}\x1frelease".encode()).hexdigest(),
                    "reasons": [*held.reasons, {"kind": "storm_release"}], "suppressed": []})
