"""Commits landing in order while the next batches stage (features/commits.py), checked
against the reference store, including a commit that fails mid-stream."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import pytest

from alerting.ledger import AlertLedger
from churnwatch.core.errors import ChurnwatchError
from churnwatch.core.events import Event
from features.cache import StateCache
from features.commits import CommitChain, CommitChainBroken
from features.store import FeatureStore
from tests.support.commits import commit
from tests.support.feature_oracle import (
    MANY_SUBS,
    Oracle,
    assert_same_rows,
    batches,
    random_stream,
)
from tests.support.redis_target import RedisTarget


class Boom(ChurnwatchError):
    pass


async def stage_overlapped(store: FeatureStore, chain: CommitChain, oracle: Oracle,
                           plan: Sequence[list[Event]], start: int, landed: list[int],
                           fail_at: int | None = None) -> None:
    """Stage plan[start:] on ``chain``, each batch compared with the oracle before its
    commit; a landed batch's index goes to ``landed``; the commit of ``fail_at`` fails.
    Every third commit is slow, so a later one would overtake it if the chain allowed."""
    ledger = AlertLedger(store.redis)
    for k in range(start, len(plan)):
        await chain.ready()  # as the pipeline does
        staged = await store.stage(plan[k])
        want_status, want_matrix, want_attrs = oracle.apply(plan[k])
        assert staged.status == want_status, f"batch {k}"
        assert_same_rows(staged.matrix, want_matrix, f"batch {k}")
        assert staged.attrs == want_attrs, f"batch {k}"

        async def write(staged=staged, k=k) -> None:
            if k % 3 == 0:
                await asyncio.sleep(0.002)
            if k == fail_at:
                raise Boom("redis went away")
            await commit(ledger, {}, {}, states=staged.staged)
            landed.append(k)

        await chain.submit(staged, {}, write)
    await chain.drain()


async def assert_stored(store: FeatureStore, oracle: Oracle) -> None:
    got = await store.read(list(oracle.ref.subscribers))
    assert set(got) == set(oracle.ref.subscribers)
    for sid, (row, attrs) in got.items():
        assert_same_rows(row[None, :], oracle.ref.features(sid)[None, :], sid)
        assert attrs == oracle.ref.attrs(sid)


@pytest.mark.integration
@pytest.mark.parametrize(("cache_size", "depth"), [(2, 1), (10_000, 1), (3, 2), (0, 1)])
def test_overlapped_commits_match_the_reference(redis_target: RedisTarget, cache_size: int,
                                                depth: int) -> None:
    async def go() -> None:
        client = redis_target.client()
        await client.flushall()
        events = random_stream(3, MANY_SUBS, 700)
        plan = batches(events, random.Random(3))
        store, oracle, landed = FeatureStore(client, cache=StateCache(cache_size)), Oracle(), []
        await stage_overlapped(store, CommitChain(store, depth), oracle, plan, 0, landed)
        assert landed == list(range(len(plan)))
        await assert_stored(FeatureStore(client), oracle)  # what Redis holds, no cache
        await client.aclose()

    asyncio.run(go())


@pytest.mark.integration
@pytest.mark.parametrize("depth", [1, 2])
def test_a_failed_commit_stops_the_chain_and_the_replay_is_exact(redis_url: str,
                                                                 depth: int) -> None:
    async def go() -> None:
        client = RedisTarget(redis_url).client()
        await client.flushall()
        events = random_stream(5, MANY_SUBS, 700)
        plan = batches(events, random.Random(5))
        fail_at = len(plan) // 2
        store, landed = FeatureStore(client, cache=StateCache(10_000)), []
        chain = CommitChain(store, depth)
        with pytest.raises(CommitChainBroken) as broken:
            await stage_overlapped(store, chain, Oracle(), plan, 0, landed, fail_at)
        assert isinstance(broken.value.__cause__, Boom)
        assert landed == list(range(fail_at))  # in order, and nothing after the failure
        assert len(store.cache) == 0
        with pytest.raises(CommitChainBroken):
            await chain.drain()
        # the replay from the last landed batch: a fresh store reads what Redis holds
        oracle = Oracle()
        for batch in plan[:fail_at]:
            oracle.apply(batch)
        store = FeatureStore(client, cache=StateCache(10_000))
        await stage_overlapped(store, CommitChain(store, depth), oracle, plan, fail_at, landed)
        assert landed == list(range(len(plan)))
        await assert_stored(FeatureStore(client), oracle)
        await client.aclose()

    asyncio.run(go())


@pytest.mark.integration
def test_without_a_cache_or_after_a_clear_staging_waits_for_the_landing(redis_url: str) -> None:
    async def go() -> None:
        client = RedisTarget(redis_url).client()
        await client.flushall()
        events = random_stream(9, MANY_SUBS, 60)
        ledger = AlertLedger(client)
        gate = asyncio.Event()

        async def slow_commit(staged):
            await gate.wait()
            await commit(ledger, {}, {}, states=staged.staged)

        store = FeatureStore(client, cache=StateCache(100))
        chain = CommitChain(store)
        first = await store.stage(events[:30])
        await chain.submit(first, {}, lambda: slow_commit(first))
        assert chain.under_way == 1
        store.cache.clear()  # partitions moved while the commit was under way
        waiting = asyncio.ensure_future(chain.ready())
        await asyncio.sleep(0.01)
        assert not waiting.done()
        gate.set()
        await waiting
        assert chain.under_way == 0

        uncached = FeatureStore(client)
        second = await uncached.stage(events[30:])
        task = await CommitChain(uncached).submit(
            second, {}, lambda: commit(ledger, {}, {}, states=second.staged))
        assert task.done()  # nothing to stage on: it landed before submit returned
        oracle = Oracle()
        oracle.apply(events)
        await assert_stored(FeatureStore(client), oracle)
        await client.aclose()

    asyncio.run(go())
