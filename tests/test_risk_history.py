"""Risk score over time: one point per subscriber and event-time day, capped, in Redis."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
import redis.asyncio as aioredis

from alerting.decide import _risk
from alerting.risk import RiskHistory, pack, unpack
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys

DAY = 86_400_000
T0 = 1_767_225_600_000  # a UTC midnight
from tests.support.commits import record_risk


def test_each_subscriber_keeps_its_last_row_of_each_day_in_event_order() -> None:
    triggers = [Event(event_id=str(n), subscriber_id=sid, type="login", ts=ts) for n, (sid, ts)
                in enumerate([("a", T0 + 1), ("a", T0 + DAY + 5), ("b", T0 + 2), ("a", T0 + 3),
                              ("b", T0 - DAY)])]
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    severity = np.array([3, 0, 1, 2, 0])
    assert _risk(triggers, scores, severity) == {  # a late day comes last (the store skips it)
        "a": [(T0 + 3, 0.4, "medium"), (T0 + DAY + 5, 0.2, "")],
        "b": [(T0 + 2, 0.3, "low"), (T0 - DAY, 0.5, "")]}


@pytest.mark.integration
def test_points_replace_the_same_day_skip_earlier_days_and_are_capped(redis_url: str) -> None:
    async def main() -> tuple[list[list[dict]], int, int]:
        client = aioredis.Redis.from_url(redis_url)
        risk = RiskHistory(client, cap=3)
        seen = []
        for batch in (
            {"s": [(T0 + 10, 0.1, "low"), (T0 + DAY + 10, 0.2, "medium")]},
            {"s": [(T0 + DAY + 20, 0.25, "high")]},           # same day as the last: replaces
            {"s": [(T0 + 30, 0.9, "high")]},                   # an earlier day: ignored
            {"s": [(T0 + 2 * DAY, 0.3, ""), (T0 + 2 * DAY + 1, 0.35, ""),  # same day in a batch
                   (T0 + 3 * DAY, 1.7, "high")], "t": [(T0, -1.0, "")]},  # clamped to [0, 1]
        ):
            await record_risk(risk, batch)
            seen.append(await risk.read("s"))
        seen.append(await risk.read("t"))
        ttl = await client.ttl(Keys().risk("s"))
        size = await client.strlen(Keys().risk("s"))
        await client.aclose()
        return seen, ttl, size

    seen, ttl, size = asyncio.run(main())
    point = lambda ts, score, sev: {"ts": ts // DAY * DAY, "score": score, "severity": sev}  # noqa: E731
    assert seen[0] == [point(T0, 0.1, "low"), point(T0 + DAY, 0.2, "medium")]
    assert seen[1] == seen[2] == [point(T0, 0.1, "low"), point(T0 + DAY, 0.25, "high")]
    assert seen[3] == [point(T0 + DAY, 0.25, "high"), point(T0 + 2 * DAY, 0.35, None),
                       point(T0 + 3 * DAY, 1.0, "high")]  # capped at 3, oldest dropped
    assert seen[4] == [point(T0, 0.0, None)]
    assert ttl == -1 and size == 3 * 4  # 4 bytes a point; no expiry (the sweep's job)


def test_a_point_keeps_its_day_severity_and_score_to_four_decimals() -> None:
    days = [0, 1, 20_454, 65_535]
    scores = [0.0, 0.0001, 0.1234, 0.5, 0.9999, 1.0]
    for day in days:
        for score in scores:
            for sev in ("", "low", "medium", "high"):
                raw = pack(day, score, sev)
                assert len(raw) == 4
                assert unpack(raw) == [{"ts": day * DAY, "score": score, "severity": sev or None}]
    assert unpack(pack(-3, -0.5, "") + pack(70_000, 2.0, "high")) == [  # clamped
        {"ts": 0, "score": 0.0, "severity": None},
        {"ts": 65_535 * DAY, "score": 1.0, "severity": "high"}]
    grid = np.linspace(0, 1, 10_001)
    back = np.array([unpack(pack(0, x, ""))[0]["score"] for x in grid])
    assert np.abs(back - grid).max() < 1e-9  # every 4-decimal score comes back exactly


@pytest.mark.integration
def test_a_legacy_history_is_read_then_converted_by_the_next_point(redis_url: str) -> None:
    legacy = lambda ts, score, code: struct.pack("<IHB", ts // 1000, score, code)  # noqa: E731
    old = b"".join([legacy(T0 + 5_000, 1234, 1), legacy(T0 + DAY + 7_000, 10_000, 3),
                    legacy(T0 + 2 * DAY + 9, 0, 0)])

    async def main() -> tuple[list[dict], list[dict], list[dict], int, int, int]:
        client = aioredis.Redis.from_url(redis_url)
        keys = Keys()
        await client.delete(keys.risk("s"), keys.legacy_risk("s"), keys.risk("u"),
                            keys.legacy_risk("u"))
        await client.set(keys.legacy_risk("s"), old)
        await client.set(keys.legacy_risk("u"), old)
        risk = RiskHistory(client, cap=3)
        before = await risk.read("s")
        await record_risk(risk, {"s": [(T0 + 2 * DAY + 50, 0.6, "low"),   # replaces the last
                                       (T0 + 3 * DAY, 0.7, "medium")],    # then cut to 3
                                 "u": [(T0 + DAY, 0.1, "high")]})          # earlier: ignored
        after = await risk.read("s")
        kept = await risk.read("u")
        gone = await client.exists(keys.legacy_risk("s"), keys.legacy_risk("u"))
        sizes = (await client.strlen(keys.risk("s")), await client.strlen(keys.risk("u")))
        await client.aclose()
        return before, after, kept, gone, *sizes

    before, after, kept, gone, size_s, size_u = asyncio.run(main())
    point = lambda day, score, sev: {"ts": T0 + day * DAY, "score": score, "severity": sev}  # noqa: E731
    assert before == [point(0, 0.1234, "low"), point(1, 1.0, "high"), point(2, 0.0, None)]
    assert after == [point(1, 1.0, "high"), point(2, 0.6, "low"), point(3, 0.7, "medium")]
    assert kept == before  # converted as it was: the late point changes nothing
    assert gone == 0 and size_s == 12 and size_u == 12
