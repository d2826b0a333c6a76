"""Subscriber state expiry: state keys carry no TTL while a subscriber is active; the silence
sweep removes subscribers idle for ``state_ttl_days`` of event time, and a churned
subscriber's state expires ``state_ttl_days`` after the churn (wall clock)."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from benchmarks.profile_pipeline import CountingPublisher
from churnwatch.assembly import build_pipeline
from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.infra.config import Settings
from churnwatch.infra.redis.connect import connect
from churnwatch.infra.runtime.metrics import Metrics
from streams.records import Record

pytestmark = pytest.mark.integration
T0 = 1_767_225_600_000  # 2026-01-01


def record(offset: int, *events: dict) -> Record:
    return Record("churn.events", 0, offset, orjson.dumps(list(events)), None)


def login(n: int, sub: str, day: float) -> dict:
    return {"event_id": f"e{n}", "subscriber_id": sub, "type": "login",
            "ts": T0 + int(day * DAY_MS)}


def test_idle_subscribers_are_swept_out_and_churned_ones_expire(redis_url: str) -> None:
    keys = Keys()

    async def go() -> dict:
        settings = Settings(broker="kafka://127.0.0.1:1", redis_url=redis_url,
                            state_ttl_days=2, state_cache_size=100)
        client = connect(settings)
        await client.flushall()
        metrics = Metrics()
        pipeline = build_pipeline(settings, client, metrics)
        publisher = CountingPublisher()
        await pipeline.run([record(0, login(1, "+447900000001", 0),
                                   login(2, "+447900000002", 0),
                                   login(3, "+447900000003", 0))], publisher)
        churn = {"event_id": "e5", "subscriber_id": "+447900000003", "type": "churn",
                 "ts": T0 + DAY_MS}
        await pipeline.run([record(1, login(4, "+447900000002", 1.5), churn)], publisher)
        ttl_active = await client.ttl(keys.state("+447900000002"))
        ttl_churned = await client.ttl(keys.state("+447900000003"))
        risk_ttls = [await client.ttl(keys.risk(f"+44790000000{n}")) for n in (2, 3)]
        had_risk_1 = await client.exists(keys.risk("+447900000001"))
        # 1 is idle 2.5 days at the watermark (day 2.5): more than the 2-day TTL
        await pipeline.run([record(2, login(6, "+447900000002", 2.5))], publisher)
        await pipeline.sweep(0, publisher)
        out = {
            "ttl_active": ttl_active, "ttl_churned": ttl_churned,
            "state_1": await client.exists(keys.state("+447900000001")),
            "state_2": await client.exists(keys.state("+447900000002")),
            "risk_1": (had_risk_1, await client.exists(keys.risk("+447900000001"))),
            "risk_ttls": risk_ttls,
            "due": {m.decode() for m in await client.zrange(keys.silence_due(0), 0, -1)},
            "expired": metrics.registry.get_sample_value(
                "churnwatch_subscribers_expired_total"),
            "cached_1": pipeline.store.cache.get(["+447900000001"]).found[0],
            "cache_gauge": [metrics.registry.get_sample_value(
                "churnwatch_state_cache", {"measure": m}) for m in ("subscribers", "bytes")],
            "cache": (len(pipeline.store.cache), pipeline.store.cache.memory_bytes),
        }
        await client.aclose()
        return out

    out = asyncio.run(go())
    assert out["ttl_active"] == -1  # no expiry while active
    assert 0 < out["ttl_churned"] <= 2 * 86_400
    assert out["state_1"] == 0 and out["state_2"] == 1
    assert out["risk_1"] == (1, 0)  # the risk history goes with the state
    assert out["risk_ttls"][0] == -1 and 0 < out["risk_ttls"][1] <= 2 * 86_400
    assert "+447900000001" not in out["due"] and "+447900000002" in out["due"]
    assert out["expired"] == 1.0
    assert not out["cached_1"]
    # the cache's gauges are set after each batch: the sweep forgot subscriber 1 since
    assert out["cache_gauge"] == [out["cache"][0] + 1, out["cache"][1]]
