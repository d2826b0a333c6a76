"""Random labelled streams for the label tests: daily activity, labels, late and re-sent
events."""

from __future__ import annotations

import random

from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS

T0 = 1_778_371_200_000 + 9 * 3_600_000  # 09:00 UTC


def _ev(sid: str, n: int, kind: str, ts: int, **kw) -> Event:  # type: ignore[no-untyped-def]
    return Event(event_id=f"{sid}-{n}", subscriber_id=sid, type=kind, ts=ts, **kw)


def _random_stream(seed: int, subscribers: int = 6, days: int = 120) -> list[Event]:
    """Daily activity with labels, late events (some past the lateness) and re-sent events."""
    rng = random.Random(seed)
    kinds = ["login"] * 8 + ["spend"] * 3 + ["usage"] * 4 + ["complaint"] * 2 + \
        ["profile", "active", "churn"]
    out: list[Event] = []
    n = 0
    for day in range(days):
        for s in range(subscribers):
            if rng.random() < 0.5:
                continue
            sid = f"+4477009{s:05d}"
            kind = rng.choice(kinds)
            ts = T0 + day * DAY_MS + rng.randrange(DAY_MS)
            if rng.random() < 0.08:
                ts -= rng.randrange(5 * DAY_MS)  # late; some beyond the 3-day lateness
            extra = {"spend": {"amount": rng.choice([10.0, 55.5, 120.0])},
                     "usage": {"data_mb": 300.0, "voice_min": 12.5},
                     "complaint": {"category": rng.choice(["network", "billing"])},
                     "profile": {"plan": "standard", "monthly_fee": 25.0,
                                 "tenure_months": rng.choice([3.0, 14.5]),
                                 "attrs": {"contract_months_left": float(rng.randrange(12))}},
                     }.get(kind, {})
            n += 1
            out.append(_ev(sid, n, kind, ts, **extra))
            if rng.random() < 0.05:  # a replay of an earlier event
                out.append(rng.choice(out))
    return out
