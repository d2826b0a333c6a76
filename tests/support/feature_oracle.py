"""The feature store's oracle harness: random streams with duplicates, late and
out-of-order events, the plain-Python oracle and the row comparison."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import datetime, timezone

import numpy as np

from churnwatch.core.events import COMPLAINT_CATEGORIES, Event
from churnwatch.core.units import DAY_MS
from features.reference import ReferenceStore
from features.schema import FEATURES
from features.store import APPLIED

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


SUBS = ("+447911123456", "+12025550123", "pseudo-7f3a", "tok:b6")


KIND_WEIGHTS = {"login": 8, "spend": 5, "usage": 4, "complaint": 2, "plan_change": 1,
                "profile": 1, "churn": 0.3, "active": 0.3, "outcome": 0.3}


def utc(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=timezone.utc).timestamp()) * 1000


def make_event(rng: random.Random, n: int, sub: str, kind: str, ts: int) -> Event:
    """A valid event of ``kind`` with values in exact units (cents / thousandths)."""
    common = {"event_id": f"ev-{n}", "subscriber_id": sub, "type": kind, "ts": ts}
    if kind == "spend":
        return Event(**common, amount=rng.choice([0, rng.randint(1, 50_000)]) / 100)
    if kind == "complaint":
        return Event(**common, category=rng.choice(COMPLAINT_CATEGORIES))
    if kind == "usage":
        return Event(**common, data_mb=rng.randint(0, 5_000_000) / 1000,
                     voice_min=rng.randint(0, 600_000) / 1000, sms=rng.randint(0, 9))
    if kind == "plan_change":
        return Event(**common, plan=rng.choice(["s", "m", "l"]),
                     monthly_fee=rng.randint(0, 12_000) / 100)
    if kind == "profile":
        tenure = rng.choice([None, 0, rng.randint(0, 240), rng.randint(0, 2400) / 10,
                             rng.uniform(0, 1200)])
        attrs = rng.choice([None, {"arpu": rng.randint(0, 9000) / 100,
                                   "devices": float(rng.randint(1, 5))}])
        return Event(**common, plan=rng.choice([None, "family"]), tenure_months=tenure,
                     attrs=attrs)
    if kind == "churn":
        return Event(**common, reason=rng.choice([None, "port-out"]))
    if kind == "outcome":
        return Event(**common, alert_id="a" * 8, result="declined")
    return Event(**common)


def random_stream(seed: int, subscribers: Sequence[str], n_events: int,
                  span_days: int = 150) -> list[Event]:
    """Event-time ordered mostly, with in-lateness and beyond-lateness stragglers, events
    straddling midnight / month starts / window edges, and exact duplicates re-sent later."""
    rng = random.Random(seed)
    kinds, weights = zip(*KIND_WEIGHTS.items())
    # anchors: month starts and exact window distances, where off-by-one errors live
    month_starts = [utc(f"2026-{m:02d}-01T00:00:00") for m in range(1, 13)]
    cursor = {s: T0 + rng.randint(0, 20) * DAY_MS for s in subscribers}
    out: list[Event] = []
    for n in range(n_events):
        if out and rng.random() < 0.08:  # an exact duplicate, re-sent later (mostly recent)
            out.append(rng.choice(out[-30:] if rng.random() < 0.7 else out))
            continue
        sub = rng.choice(subscribers)
        roll = rng.random()
        mine = [e.ts for e in out[-40:] if e.subscriber_id == sub]
        if mine and rng.random() < 0.08:  # the same instant as an earlier event: ties
            kind = rng.choice(["plan_change", "profile", rng.choices(kinds, weights)[0]])
            out.append(make_event(rng, n, sub, kind, rng.choice(mine)))
            continue
        if roll < 0.05:  # land on a month start (±1 ms)
            ts = min((m for m in month_starts if m > cursor[sub] - 3 * DAY_MS),
                     default=cursor[sub]) + rng.choice([-1, 0, 1])
        elif roll < 0.10:  # exactly 7 / 30 / 35 days (± 1 ms) before this subscriber's clock
            ts = cursor[sub] - rng.choice([7, 30, 35]) * DAY_MS + rng.choice([-1, 0, 1])
        elif roll < 0.20:  # out of order within the lateness
            ts = cursor[sub] - rng.randint(0, 7 * DAY_MS)
        elif roll < 0.25:  # beyond the lateness
            ts = cursor[sub] - rng.randint(7 * DAY_MS + 1, 40 * DAY_MS)
        else:  # forward, sometimes a long silence
            step = rng.choice([rng.randint(0, DAY_MS // 2), rng.randint(0, 3 * DAY_MS),
                               rng.randint(0, span_days // 6 * DAY_MS)]
                              if rng.random() < 0.1 else [rng.randint(0, DAY_MS // 2)])
            ts = cursor[sub] + step
        ts = max(ts, T0 - 60 * DAY_MS)
        cursor[sub] = max(cursor[sub], ts)
        out.append(make_event(rng, n, sub, rng.choices(kinds, weights)[0], ts))
    return out


def batches(events: Sequence[Event], rng: random.Random, max_size: int = 40) -> list[list[Event]]:
    out, i = [], 0
    while i < len(events):
        size = rng.choice([1, 2, rng.randint(1, max_size), rng.randint(1, max_size)])
        out.append(list(events[i:i + size]))
        i += size
    return out


class Oracle:
    """ReferenceStore plus the expected per-event answers."""

    def __init__(self) -> None:
        self.ref = ReferenceStore()

    def apply(self, batch: Sequence[Event]) -> tuple[str, np.ndarray, list[dict]]:
        status, rows, attrs = [], [], []
        for ev in batch:
            s, row = self.ref.apply(ev)
            status.append(s)
            if s == APPLIED:
                rows.append(row)
                attrs.append(self.ref.attrs(ev.subscriber_id))
        matrix = np.array(rows).reshape(len(rows), len(FEATURES))
        return "".join(status), matrix, attrs


def assert_same_rows(got: np.ndarray, want: np.ndarray, context: str) -> None:
    assert got.shape == want.shape, context
    if not np.array_equal(got, want, equal_nan=True):
        bad = np.argwhere(~((got == want) | (np.isnan(got) & np.isnan(want))))
        r, c = bad[0]
        raise AssertionError(f"{context}: row {r} feature {FEATURES[c]}: store {got[r, c]!r} "
                             f"!= reference {want[r, c]!r} ({len(bad)} cells differ)")


# ------------------------------------------------------------------ oracle: seeded streams
MANY_SUBS = SUBS + tuple(f"+4479111{k:05d}" for k in range(36))  # spread over cluster nodes


# ------------------------------------------------------------------ hand-computed thresholds
def ev(n: int, sub: str, kind: str, ts: int, **kw: object) -> Event:
    return Event(event_id=f"h{n}", subscriber_id=sub, type=kind, ts=ts, **kw)
