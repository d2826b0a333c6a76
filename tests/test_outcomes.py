"""Outcome events are attributed to their alerts and counted per rule, segment and action."""

from __future__ import annotations

import asyncio

import orjson
import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from alerting.outcomes import OutcomeTracker, RetentionRate
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys

pytestmark = pytest.mark.integration


def _alert(alert_id: str, segment: str, actions: list[str]) -> bytes:
    return orjson.dumps({"alert_id": alert_id, "rules": ["seed_high_risk"], "segment": segment,
                         "actions": [{"id": a, "team": "t"} for a in actions]})


def _outcome(n: int, sid: str, alert_id: str, result: str) -> Event:
    return Event(event_id=f"o{n}", subscriber_id=sid, type="outcome", ts=1_778_000_000_000 + n,
                 alert_id=alert_id, result=result)


def test_outcomes_become_retention_rates(redis_url: str) -> None:
    async def main() -> tuple[int, list[RetentionRate], OutcomeTracker, CollectorRegistry]:
        client = aioredis.Redis.from_url(redis_url)
        keys = Keys()
        await client.lpush(keys.alerts("+1"), _alert("a1", "regular", ["offer", "callback"]))
        await client.lpush(keys.alerts("+2"), _alert("a2", "regular", ["offer"]))
        await client.lpush(keys.alerts("+3"), _alert("a3", "young", ["bundle"]))
        registry = CollectorRegistry()
        tracker = OutcomeTracker(client, keys, registry)
        matched = await tracker.record([
            _outcome(1, "+1", "a1", "accepted"), _outcome(2, "+2", "a2", "declined"),
            _outcome(3, "+3", "a3", "no_contact"), _outcome(4, "+3", "nope", "accepted")])
        rates = await tracker.rates()
        await client.aclose()
        return matched, rates, tracker, registry

    matched, rates, tracker, registry = asyncio.run(main())
    assert matched == 3 and tracker.unmatched == 1
    table = {(r.rule, r.segment, r.action): (r.accepted, r.declined, r.no_contact, r.rate)
             for r in rates}
    assert table == {
        ("seed_high_risk", "regular", "callback"): (1, 0, 0, 1.0),
        ("seed_high_risk", "regular", "offer"): (1, 1, 0, 0.5),
        ("seed_high_risk", "young", "bundle"): (0, 0, 1, None),
    }
    assert registry.get_sample_value("churnwatch_outcomes_total", {
        "result": "declined", "rule": "seed_high_risk", "segment": "regular",
        "action": "offer"}) == 1
    assert {r: registry.get_sample_value("churnwatch_action_outcomes_total", {"result": r})
            for r in ("accepted", "declined", "no_contact")} == {
        "accepted": 1, "declined": 1, "no_contact": 1}


def test_one_outcome_per_alert_and_action_later_ones_are_duplicates(redis_url: str) -> None:
    """Three outcome events (distinct ids, as three web POSTs or feeds produce) for one alert
    count once, whatever their results; another alert's outcome counts."""
    async def main() -> tuple[list[RetentionRate], OutcomeTracker, CollectorRegistry, dict]:
        client = aioredis.Redis.from_url(redis_url)
        keys = Keys(prefix="dup")
        await client.lpush(keys.alerts("+1"), _alert("a1", "regular", ["offer", "callback"]))
        await client.lpush(keys.alerts("+2"), _alert("a2", "regular", ["offer"]))
        registry = CollectorRegistry()
        tracker = OutcomeTracker(client, keys, registry)
        first = _outcome(1, "+1", "a1", "accepted")
        assert await tracker.record([first, _outcome(2, "+1", "a1", "accepted")]) == 2
        assert await tracker.record([_outcome(3, "+1", "a1", "declined")]) == 1
        assert await tracker.record([_outcome(4, "+2", "a2", "declined")]) == 1
        ledger = await client.hgetall(keys.ledger("+1"))
        rates = await tracker.rates()
        await client.aclose()
        return rates, tracker, registry, ledger

    rates, tracker, registry, ledger = asyncio.run(main())
    table = {(r.rule, r.segment, r.action): (r.accepted, r.declined, r.no_contact)
             for r in rates}
    assert table == {("seed_high_risk", "regular", "callback"): (1, 0, 0),
                     ("seed_high_risk", "regular", "offer"): (1, 1, 0)}
    assert tracker.duplicates == 2
    assert registry.get_sample_value("churnwatch_outcome_duplicates_total") == 2
    assert ledger == {b"o:a1|offer": b"o1", b"o:a1|callback": b"o1"}
