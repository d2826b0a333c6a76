"""Onboarding's label burst as a feed: one BSS profile per subscriber, then each subscriber's
label (``churn`` or ``active``) 31–60 days later, as JSON events (one per message).

Used by ``benchmarks/bench_labels.py`` and by ``tests/test_label_burst.py``. Churn is more
likely for expensive plans held a short time, so the learned model has something to find.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import orjson

from churnwatch.core.units import DAY_MS


@dataclass(frozen=True)
class LabelBurst:
    """The encoded events of a burst and how many of its labels are churn."""

    profiles: list[bytes]
    labels: list[bytes]
    churners: int

    @property
    def subscribers(self) -> int:
        return len(self.profiles)


def label_burst(n: int, start_ms: int, seed: int = 5) -> LabelBurst:
    """``n`` subscribers' profiles, each within the day after ``start_ms``, and each one's
    label 31–60 days after its profile."""
    rng = random.Random(seed)
    profiles, labels, churners = [], [], 0
    for k in range(n):
        sid = f"+4479{k:08d}"
        fee = rng.uniform(10, 120)
        tenure = rng.randint(1, 72)
        churned = rng.random() < 0.15 + 0.5 * (fee > 90) * (tenure < 12)
        churners += churned
        ts = start_ms + rng.randrange(DAY_MS)
        profiles.append(orjson.dumps({
            "event_id": f"p{k}", "subscriber_id": sid, "type": "profile", "ts": ts,
            "plan": "standard", "tenure_months": tenure,
            "attrs": {"monthly_fee": round(fee, 2), "devices": rng.randint(1, 4)}}))
        labels.append(orjson.dumps({
            "event_id": f"l{k}", "subscriber_id": sid, "type": "churn" if churned else "active",
            "ts": ts + rng.randint(31 * DAY_MS, 60 * DAY_MS)}))
    return LabelBurst(profiles, labels, churners)
