"""Risk score over time: one point per subscriber and event-time day, capped, in Redis."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
import redis.asyncio as aioredis

from alerting.decide import _risk
from alerting.risk import RiskHistory
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
    point = lambda ts, score, sev: {"ts": ts // 1000 * 1000, "score": score, "severity": sev}  # noqa: E731
    assert seen[0] == [point(T0, 0.1, "low"), point(T0 + DAY, 0.2, "medium")]
    assert seen[1] == seen[2] == [point(T0, 0.1, "low"), point(T0 + DAY, 0.25, "high")]
    assert seen[3] == [point(T0 + DAY, 0.25, "high"), point(T0 + 2 * DAY, 0.35, None),
                       point(T0 + 3 * DAY, 1.0, "high")]  # capped at 3, oldest dropped
    assert seen[4] == [point(T0, 0.0, None)]
    assert ttl == -1 and size == 3 * 7  # 7 bytes a point; no expiry (the sweep's job)
