"""Bounded profile attributes (issue #26, "unbounded state"): a profile keeps at most
``attrs_max_keys`` attributes (the first in key order), keys longer than
``attrs_max_key_length`` are dropped, drops are counted, and the stored state per subscriber
stays small however many keys a feed sends."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from alerting.ledger import AlertLedger
from churnwatch.core.errors import ConfigError
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.infra.settings_load import load_settings
from features.attrs import AttrBounds
from features.store import FeatureStore, StoreConfig
from tests.support.commits import commit
from tests.support.label_oracle import Harness

T0 = 1_778_371_200_000
K = Keys()


def _profile(i: int, keys: int, prefix: str = "k") -> Event:
    return Event(f"p{i}", f"sub-{i}", "profile", T0 + i, tenure_months=12.0,
                 attrs={f"{prefix}{i}_{j:04d}": float(j) for j in range(keys)})


def test_bounds_keep_the_first_keys_in_key_order_and_count_the_rest() -> None:
    bounds = AttrBounds(max_keys=3, max_key_length=5)
    assert bounds.apply(None) == ({}, 0)
    small = {"b": 1.0, "a": 2.0}
    kept, dropped = bounds.apply(small)
    assert (kept, dropped, list(kept)) == (small, 0, ["b", "a"])  # untouched, order kept
    kept, dropped = bounds.apply({"e": 1.0, "toolong": 2.0, "c": 3.0, "a": 4.0, "d": 5.0})
    assert (kept, dropped) == ({"a": 4.0, "c": 3.0, "d": 5.0}, 2)
    # the producer's key order does not decide which keys are kept
    assert bounds.apply(dict(reversed({"e": 1.0, "c": 3.0, "a": 4.0, "d": 5.0}.items())))[0] \
        == {"a": 4.0, "c": 3.0, "d": 5.0}


def test_the_settings_are_validated() -> None:
    assert load_settings().attrs_max_keys == 64
    for key, value in (("attrs_max_keys", -1), ("attrs_max_keys", 5000),
                       ("attrs_max_key_length", 0), ("attrs_max_key_length", 65)):
        with pytest.raises(ConfigError, match=key.replace("_", "-")):
            load_settings(**{key: value})  # overrides are named as CLI options


async def _stored_bytes(url: str, bounds: AttrBounds, n: int, keys: int) -> float:
    """MEMORY USAGE of the subscribers' state keys per subscriber, after ``n`` profiles of
    ``keys`` attributes each."""
    client = aioredis.Redis.from_url(url)
    await client.flushall()
    store, ledger = FeatureStore(client, StoreConfig(attrs=bounds)), AlertLedger(client)
    staged = await store.stage([_profile(i, keys) for i in range(n)])
    await commit(ledger, {}, {}, states=staged.staged)
    assert staged.attrs_dropped == n * max(0, keys - bounds.max_keys)
    total = 0
    for i in range(n):
        total += await client.memory_usage(K.state(f"sub-{i}"))
    await client.aclose()
    return total / n


def test_a_flood_of_keys_costs_the_bound_not_the_flood(redis_url: str) -> None:
    """200 profiles of 1,000 keys each: about 14 KB per subscriber stored unbounded, under
    1.5 KB with the default bound of 64 keys (the issue's 20,000 such profiles: +395 MB)."""
    unbounded = asyncio.run(_stored_bytes(redis_url, AttrBounds(max_keys=1024), 200, 1000))
    bounded = asyncio.run(_stored_bytes(redis_url, AttrBounds(), 200, 1000))
    small = asyncio.run(_stored_bytes(redis_url, AttrBounds(), 200, 64))
    assert unbounded > 10_000
    assert bounded < 1_500 and bounded <= small + 64  # 64 keys, whatever was sent


def test_the_pipeline_stores_the_bounded_attributes_and_counts_the_drops(
        redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url)
        await h.run([_profile(i, 1000) for i in range(50)] + [
            Event("long", "sub-x", "profile", T0, attrs={"x" * 64: 1.0, "ok": 2.0})])
        assert h.pipeline is not None
        found = await h.pipeline.store.read(["sub-3", "sub-x"])
        attrs = found["sub-3"][1]
        assert list(attrs) == [f"k3_{j:04d}" for j in range(64)]
        assert found["sub-x"][1] == {"x" * 64: 1.0, "ok": 2.0}  # within the default bounds
        registry = h.pipeline.metrics.registry
        assert registry.get_sample_value("churnwatch_dropped_attrs_total") == 50 * 936
        assert registry.get_sample_value("churnwatch_events_total",
                                         {"type": "profile", "outcome": "applied"}) == 51
        await h.stop()

    asyncio.run(main())
