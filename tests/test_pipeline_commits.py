"""The pipeline's overlapped commits (features/commits.py) under failure: a commit that fails
for good takes its batch and the one staged on it down, and the pipeline goes on from what
Redis holds (real pipeline and Redis, no Kafka)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest
import redis.asyncio as aioredis

from alerting.ledger import AlertLedger
from alerting.playbook import load_playbook
from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from churnwatch.infra.runtime.metrics import Metrics
from features.cache import StateCache
from features.commits import CommitChainBroken
from features.reference import ReferenceStore
from features.schema import FEATURES
from features.store import FeatureStore
from online_models.model import ChurnModel
from streams.pipeline import Pipeline
from streams.records import Record
from tests.support.label_oracle import RULES, Collector

pytestmark = pytest.mark.integration
T0 = 1_778_371_200_000
SUBS = [f"+4477009001{k:02d}" for k in range(6)]


def _batch(n: int) -> list[Event]:
    return [Event(event_id=f"e{n}-{k}", subscriber_id=sid, type="login",
                  ts=T0 + n * DAY_MS + k) for k, sid in enumerate(SUBS)]


def _records(offset: int, events: list[Event]) -> list[Record]:
    return [Record("churn.events", 0, offset + i, msgspec.json.encode(ev))
            for i, ev in enumerate(events)]


def test_a_commit_that_fails_for_good_does_not_stop_later_batches(redis_url: str) -> None:
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        store = FeatureStore(client, cache=StateCache(1000))
        ledger = AlertLedger(client)
        pipeline = Pipeline(store, ledger, RULES, ChurnModel(), load_playbook(), Metrics())
        publisher = Collector()
        real_writes = ledger.writes
        calls = []

        async def writes(*args, **kwargs):
            calls.append(1)
            if len(calls) == 2:  # slow, so the next batch stages on it meanwhile
                await asyncio.sleep(0.2)
                raise ValueError("a script error: not retried")
            return await real_writes(*args, **kwargs)

        ledger.writes = writes
        batches = [_batch(n) for n in range(4)]
        first = await pipeline.start(_records(0, batches[0]), publisher)
        failing = await pipeline.start(_records(6, batches[1]), publisher)
        with pytest.raises(CommitChainBroken):  # staged on the failing batch: not committed
            await (await pipeline.start(_records(12, batches[2]), publisher))
        await first
        with pytest.raises(ValueError):
            await failing  # (the worker dead-letters both batches' records, churnwatch/worker.py)
        await (await pipeline.start(_records(18, batches[3]), publisher))
        # Redis holds batches 0 and 3 only, and the pipeline read batch 3 from it
        ref = ReferenceStore()
        for ev in batches[0] + batches[3]:
            ref.apply(ev)
        got = await FeatureStore(client).read(SUBS)
        logins = FEATURES.index("logins_7d")
        for sid in SUBS:
            assert got[sid][0][logins] == ref.features(sid)[logins] == 2
        await client.aclose()

    asyncio.run(main())
