"""The feature store at the operators' thresholds, computed by hand: login drop, lateness and
duplicates, half-open windows to the millisecond, midnight, complaints, spend decline, RFM and
plan features, reads at a later now."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest
import redis.asyncio as aioredis

from alerting.ledger import AlertLedger
from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from features.schema import FEATURES, as_dict
from features.store import APPLIED, FeatureStore
from rules.engine import evaluate_reference
from rules.ruleset import load_ruleset
from tests.support.commits import commit
from tests.support.feature_oracle import (
    ev,
    utc,
)

NOW = utc("2026-06-15T12:00:00")


async def _apply(url: str, events: Sequence[Event]) -> list[dict[str, float]]:
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    store, ledger = FeatureStore(client), AlertLedger(client)
    result = await store.stage(events)
    await commit(ledger, {}, {}, states=result.staged)
    await client.aclose()
    assert result.status == APPLIED * len(events)
    return [as_dict(row) for row in result.matrix]


RULES = load_ruleset()


def indicators(row: dict[str, float]) -> dict[str, bool]:
    matrix = np.array([[row[name] for name in FEATURES]])
    bits = evaluate_reference(RULES, matrix).indicators[0]
    return {ind.name: bool(b) for ind, b in zip(RULES.indicators, bits)}


def _login_history(recent: int) -> list[Event]:
    """5 logins a week for the 4 weeks before the last 7 days, then ``recent`` logins."""
    out = []
    for week in range(4):  # days 7..34 before now: 4 logins in each of days 8-11, 15-18, ...
        for d in range(5):
            out.append(ev(len(out), "s", "login", NOW - (8 + 7 * week + d) * DAY_MS + d))
    # boundary noise that must not count: day 35 before now
    out.append(ev(len(out), "s", "login", NOW - 35 * DAY_MS))
    for r in range(recent):
        out.append(ev(len(out), "s", "login", NOW - r * DAY_MS))
    # the scored event is the last one, at NOW
    out.sort(key=lambda e: e.ts)
    return out


@pytest.mark.parametrize(("recent", "drop"), [(1, True), (2, False)])
def test_login_drop_threshold(redis_url: str, recent: int, drop: bool) -> None:
    events = _login_history(recent)
    row = asyncio.run(_apply(redis_url, events))[-1]
    assert events[-1].ts == NOW
    assert row["logins_7d"] == recent
    assert row["logins_prev28"] == 20
    assert row["days_since_login"] == 0
    assert indicators(row)["login_drop"] is drop


def test_lateness_edge_and_duplicates(redis_url: str) -> None:
    """Exactly 7 days behind the clock is still on time (and a duplicate); 1 ms more is late."""

    async def go() -> str:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        store, ledger = FeatureStore(client), AlertLedger(client)
        first = ev(1, "s", "login", NOW)
        statuses = ""
        for batch in ([first, ev(2, "s", "login", NOW + 7 * DAY_MS)],
                      [first, ev(3, "s", "login", NOW), ev(3, "s", "login", NOW)],
                      [ev(4, "s", "login", NOW + 1)],
                      [ev(5, "s", "spend", NOW + 7 * DAY_MS + 1, amount=1.0),
                       first, ev(6, "s", "login", NOW + 1), ev(7, "s", "login", NOW)]):
            result = await store.stage(batch)
            await commit(ledger, {}, {}, states=result.staged)
            statuses += result.status + "|"
        await client.aclose()
        return statuses

    # 1st batch: both applied; 2nd: first is a duplicate exactly at the edge, h3 new then dup;
    # 3rd: on time; 4th: the clock moves 1 ms, so everything at NOW is late (dup or not),
    # NOW + 1 is exactly at the edge: applied
    assert asyncio.run(go()) == "AA|DAD|A|ALAL|"


@pytest.mark.parametrize("now", [NOW, NOW - NOW % DAY_MS, NOW - NOW % DAY_MS - 1])
def test_windows_are_half_open_to_the_millisecond(redis_url: str, now: int) -> None:
    """(now − 7d, now], (now − 35d, now − 7d] and (now − 30d, now], at noon, at midnight and
    1 ms before midnight: each edge is in the window it closes, 1 ms older is not."""
    events = [
        ev(1, "s", "login", now - 35 * DAY_MS),  # in no window
        ev(2, "s", "login", now - 35 * DAY_MS + 1),  # prev28
        ev(3, "s", "login", now - 7 * DAY_MS),  # prev28
        ev(4, "s", "login", now - 7 * DAY_MS + 1),  # 7d
        ev(5, "s", "complaint", now - 30 * DAY_MS, category="network"),  # out
        ev(6, "s", "complaint", now - 30 * DAY_MS + 1, category="billing"),  # in
        ev(7, "s", "spend", now - 30 * DAY_MS, amount=7.0),  # out
        ev(8, "s", "spend", now - 30 * DAY_MS + 1, amount=2.5),  # in
        ev(9, "s", "active", now),
    ]
    row = asyncio.run(_apply(redis_url, sorted(events, key=lambda e: e.ts)))[-1]
    assert (row["logins_7d"], row["logins_prev28"]) == (1, 2)
    assert (row["complaints_30d"], row["complaints_network_30d"],
            row["complaints_billing_30d"]) == (1, 0, 1)
    assert (row["spend_count_30d"], row["spend_amount_30d"]) == (1, 2.5)
    assert row["days_since_login"] == (now // DAY_MS) - (now - 7 * DAY_MS + 1) // DAY_MS
    # 20 in prev28 is needed: 19 is not enough
    assert indicators({**row, "logins_prev28": 19.0, "logins_7d": 0.0})["login_drop"] is False
    assert indicators({**row, "logins_prev28": 20.0, "logins_7d": 0.0})["login_drop"] is True


def test_midnight_counts_the_seventh_day_back(redis_url: str) -> None:
    """The reported case: scored at 00:00 UTC, logins during the 7th day back are in the last
    7 days (day-granular windows dropped them, and login_drop fired)."""
    midnight = NOW - NOW % DAY_MS
    events = [ev(k, "s", "login", midnight - (8 + k % 27) * DAY_MS + k * 60_000)
              for k in range(20)]  # 20 logins in the 4 weeks before
    events += [ev(100, "s", "login", midnight - 7 * DAY_MS + 1),  # 00:00:00.001, 7 days back
               ev(101, "s", "login", midnight - 6 * DAY_MS - 1),  # 23:59:59.999, 7 days back
               ev(102, "s", "active", midnight)]
    row = asyncio.run(_apply(redis_url, sorted(events, key=lambda e: e.ts)))[-1]
    assert (row["logins_7d"], row["logins_prev28"]) == (2, 20)
    assert indicators(row)["login_drop"] is False


@pytest.mark.parametrize(("first_days_ago", "count"), [(29, 2), (30, 1)])
def test_complaints_threshold(redis_url: str, first_days_ago: int, count: int) -> None:
    day = NOW - NOW % DAY_MS
    events = [ev(1, "s", "complaint", day - first_days_ago * DAY_MS, category="network"),
              ev(2, "s", "complaint", NOW, category="billing")]
    row = asyncio.run(_apply(redis_url, events))[-1]
    assert row["complaints_30d"] == count
    assert row["complaints_network_30d"] == count - 1
    assert row["complaints_billing_30d"] == 1
    assert row["complaints_service_30d"] == row["complaints_other_30d"] == 0
    assert row["days_since_complaint"] == 0
    assert indicators(row)["complaints"] is (count >= 2)


@pytest.mark.parametrize(("latest_month_spend", "decline"), [
    (51.2, True),  # exactly 0.8 × 64
    (51.21, False),  # one cent above
    (0.0, True),
])
def test_spend_decline_threshold(redis_url: str, latest_month_spend: float, decline: bool) -> None:
    # s4 = Feb 100, s3 = Mar 80 (0.8 × 100), s2 = Apr 64 (0.8 × 80), s1 = May; now in June.
    events = [
        ev(1, "s", "spend", utc("2026-01-31T23:59:59.999"), amount=999.0),  # m5
        ev(2, "s", "spend", utc("2026-02-01T00:00:00"), amount=60.0),
        ev(3, "s", "spend", utc("2026-02-28T23:59:59.999"), amount=40.0),
        ev(4, "s", "spend", utc("2026-03-10T08:00:00"), amount=80.0),
        ev(5, "s", "spend", utc("2026-04-30T23:59:59.999"), amount=64.0),
        ev(6, "s", "spend", utc("2026-05-01T00:00:00"), amount=latest_month_spend),
        ev(7, "s", "spend", utc("2026-06-01T00:00:00"), amount=5.5),  # m0
        ev(8, "s", "login", NOW),
    ]
    row = asyncio.run(_apply(redis_url, events))[-1]
    assert [row[f"spend_m{k}"] for k in range(6)] == [5.5, latest_month_spend, 64.0, 80.0,
                                                       100.0, 999.0]
    assert row["recency_days"] == 14  # last spend on June 1st, now June 15th
    assert (row["spend_count_30d"], row["spend_amount_30d"]) == (1, 5.5)  # May 1st is 45 d ago
    assert indicators(row)["spend_decline"] is decline


def test_rfm_and_plan_features(redis_url: str) -> None:
    day = NOW - NOW % DAY_MS
    events = [
        ev(6, "s", "profile", utc("2026-03-20T00:00:00"), tenure_months=12,
           attrs={"arpu": 31.5}),
        ev(1, "s", "plan_change", day - 50 * DAY_MS, plan="l", monthly_fee=40.0),
        ev(2, "s", "spend", day - 31 * DAY_MS, amount=1000.0),  # outside 30d
        ev(3, "s", "spend", day - 29 * DAY_MS, amount=120.25),  # inside 30d
        ev(4, "s", "plan_change", day - 10 * DAY_MS, plan="s", monthly_fee=25.5),
        ev(5, "s", "spend", day - 3 * DAY_MS, amount=0.75),
        ev(7, "s", "usage", NOW, data_mb=1.5, voice_min=2.25),
    ]
    row = asyncio.run(_apply(redis_url, events))[-1]
    assert row["spend_count_30d"] == 2
    assert row["spend_amount_30d"] == 121.0
    assert row["recency_days"] == 3
    assert row["monthly_fee"] == 25.5
    assert row["fee_delta"] == -14.5
    assert row["days_since_plan_change"] == 10
    assert row["tenure_months"] == 15  # 12 in March, now June
    assert (row["data_mb_7d"], row["voice_min_7d"], row["days_since_usage"]) == (1.5, 2.25, 0)
    assert indicators(row)["plan_downgrade"] is True


def test_read_at_a_later_now_ages_windows(redis_url: str) -> None:
    day = NOW - NOW % DAY_MS

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        store, ledger = FeatureStore(client), AlertLedger(client)
        events = [ev(1, "s", "spend", day - DAY_MS, amount=10.0),
                  ev(2, "s", "complaint", day, category="service"),
                  ev(3, "s", "login", NOW)]
        staged = await store.stage(events)
        await commit(ledger, {}, {}, states=staged.staged)
        later = NOW + 95 * DAY_MS
        got = await store.read(["s", "nobody"], later)
        assert list(got) == ["s"]
        row = as_dict(got["s"][0])
        assert row["recency_days"] == 96
        assert row["days_since_login"] == 95
        assert row["complaints_30d"] == 0 and row["logins_7d"] == 0
        assert row["spend_m0"] == 0 and row["spend_m3"] == 10.0  # June → September
        assert np.isnan(row["monthly_fee"]) and np.isnan(row["tenure_months"])
        # reading never changes the state
        again = await store.read(["s"])
        assert as_dict(again["s"][0])["recency_days"] == 1
        await client.aclose()

    asyncio.run(go())
