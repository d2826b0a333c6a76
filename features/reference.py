"""The oracle: features recomputed plainly from the raw list of accepted events.

Slow on purpose (every feature is a filter over the subscriber's whole history); it exists so
tests can check the Redis store against an obviously-correct definition of each feature. The
login, complaint and spend windows are the contract's half-open millisecond intervals, e.g.
``now - 7 * DAY_MS < ts <= now``; usage windows are whole UTC days (``features.schema``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

import numpy as np

from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from features.attrs import AttrBounds
from features.schema import (
    DIVISOR,
    FEATURES,
    day_of,
    month_of,
    to_cents,
    to_milli,
)

NAN = math.nan


@dataclass
class _History:
    events: list[Event] = field(default_factory=list)
    ids: set[str] = field(default_factory=set)

    @property
    def clock(self) -> int:
        return max(ev.ts for ev in self.events)


def _latest(events: list[Event]) -> Event | None:
    """Latest by event time; among equal times the one that arrived last."""
    best = None
    for ev in events:
        if best is None or ev.ts >= best.ts:
            best = ev
    return best


def features_at(events: list[Event], now: int, now_month: int) -> np.ndarray:
    """Every feature of FEATURES for one subscriber's accepted events at ``now`` (epoch ms,
    not before any of them) and ``now_month``."""
    now_day = day_of(now)

    def within(kind: str, newest: int, oldest: int) -> list[Event]:
        """Events of ``kind`` in the half-open window (now − oldest, now − newest]."""
        return [ev for ev in events if ev.type == kind and now - oldest < ev.ts <= now - newest]

    def days_ago(ev: Event) -> int:
        return now_day - day_of(ev.ts)

    def of_days(kind: str, lo: int, hi: int) -> list[Event]:
        """Events of ``kind`` whose UTC day is ``lo`` to ``hi`` days before now's."""
        return [ev for ev in events if ev.type == kind and lo <= days_ago(ev) <= hi]

    spend_by_month = [
        sum(to_cents(ev.amount) for ev in events
            if ev.type == "spend" and month_of(ev.ts) == now_month - k)
        for k in range(6)
    ]
    complaints = within("complaint", 0, 30 * DAY_MS)
    spends = within("spend", 0, 30 * DAY_MS)

    def last_day(kind: str) -> float:
        days = [day_of(ev.ts) for ev in events if ev.type == kind]
        return now_day - max(days) if days else NAN

    recency = last_day("spend")
    if math.isnan(recency):
        recency = now_day - min(day_of(ev.ts) for ev in events)
    plans = sorted((ev for ev in events if ev.type == "plan_change"), key=lambda ev: ev.ts)
    fee = to_cents(plans[-1].monthly_fee) if plans else NAN
    delta = fee - to_cents(plans[-2].monthly_fee) if len(plans) >= 2 else 0
    plan_days = now_day - day_of(plans[-1].ts) if plans else NAN
    tenure = NAN
    latest_with_tenure = None
    latest_ts = None
    for ev in events:  # arrival order: a profile counts only if it is the latest so far
        if ev.type == "profile" and (latest_ts is None or ev.ts >= latest_ts):
            latest_ts = ev.ts
            if ev.tenure_months is not None:
                latest_with_tenure = ev
    if latest_with_tenure is not None:
        # months elapsed first, then added: (t + now) - then loses precision for fractional t
        tenure = latest_with_tenure.tenure_months + (now_month - month_of(latest_with_tenure.ts))

    def usage(attr: str, lo: int, hi: int) -> int:
        return sum(to_milli(getattr(ev, attr)) for ev in of_days("usage", lo, hi))

    row = [
        *spend_by_month,
        len(within("login", 0, 7 * DAY_MS)),
        len(within("login", 7 * DAY_MS, 35 * DAY_MS)),
        len(complaints),
        *(sum(ev.category == c for ev in complaints)
          for c in ("network", "billing", "service", "other")),
        len(spends),
        sum(to_cents(ev.amount) for ev in spends),
        recency,
        usage("data_mb", 0, 6),
        usage("data_mb", 7, 34),
        usage("voice_min", 0, 6),
        usage("voice_min", 7, 34),
        fee,
        delta,
        plan_days,
        tenure,
        last_day("login"),
        last_day("complaint"),
        last_day("usage"),
        now_day - min(day_of(ev.ts) for ev in events),
    ]
    assert len(row) == len(FEATURES)
    return np.array(row, dtype=np.float64) / DIVISOR


class ReferenceStore:
    """Applies events one at a time with the store's acceptance rules, recomputing features."""

    def __init__(self, lateness_ms: int = 7 * DAY_MS, bounds: AttrBounds = AttrBounds()) -> None:
        self.lateness_ms = lateness_ms
        self.bounds = bounds
        self.subscribers: dict[str, _History] = {}

    def apply(self, ev: Event, features: bool = True) -> tuple[str, np.ndarray | None]:
        """Return ("A", features) for an accepted event (("A", None) without ``features``),
        ("D", None) or ("L", None) otherwise."""
        hist = self.subscribers.setdefault(ev.subscriber_id, _History())
        if hist.events and ev.ts < hist.clock - self.lateness_ms:
            return "L", None
        if ev.event_id in hist.ids:
            return "D", None
        hist.events.append(ev)
        hist.ids.add(ev.event_id)
        return "A", self.features(ev.subscriber_id) if features else None

    def features(self, subscriber_id: str, now_ms: int = 0) -> np.ndarray:
        """Features of a known subscriber at max(now, its clock)."""
        hist = self.subscribers[subscriber_id]
        clock = max(hist.clock, now_ms)
        latest = _latest(hist.events)
        assert latest is not None
        month = max(month_of(clock), month_of(latest.ts))
        return features_at(hist.events, clock, month)

    def attrs(self, subscriber_id: str) -> dict[str, float]:
        """Attributes of the latest profile event (by event time), within the bounds."""
        profiles = [ev for ev in self.subscribers[subscriber_id].events if ev.type == "profile"]
        latest = _latest(profiles)
        return self.bounds.apply(latest.attrs)[0] if latest else {}


def replay_lines(lines: Iterable[bytes], store: ReferenceStore,
                 outcomes: Counter[str]) -> Iterator[tuple[int, Event, np.ndarray]]:
    """Decode NDJSON lines into ``store`` in order, counting every event's outcome (applied,
    duplicate, late, invalid); yields (line number from 1, event, features) per applied event."""
    from churnwatch.core.events import decode_payload

    names = {"A": "applied", "D": "duplicate", "L": "late"}
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        events, rejected = decode_payload(line)
        outcomes["invalid"] += len(rejected)
        for ev in events:
            status, row = store.apply(ev)
            outcomes[names[status]] += 1
            if row is not None:
                yield n, ev, row
