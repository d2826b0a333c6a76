"""The Redis feature store against the plain-Python oracle (features.reference), on a real
redis-server: random streams with duplicates, late and out-of-order events, window and month
boundaries, restarts and uncommitted (crashed) batches; hand-computed thresholds; memory."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence

import numpy as np
import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alerting.ledger import AlertLedger
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from features.cache import StateCache
from features.schema import FEATURES
from features.store import APPLIED, DUPLICATE, LATE, FeatureStore
from tests.support.commits import commit
from tests.support.feature_oracle import (
    KIND_WEIGHTS,
    MANY_SUBS,
    SUBS,
    T0,
    Oracle,
    assert_same_rows,
    batches,
    make_event,
    random_stream,
    utc,
)
from tests.support.redis_target import RedisTarget

pytestmark = pytest.mark.integration















async def stage_and_check(store: FeatureStore, ledger: AlertLedger, oracle: Oracle,
                          batch: Sequence[Event], label: str):  # noqa: ANN201
    """Stage a batch, compare everything with the oracle, then commit it like the pipeline."""
    result = await store.stage(batch)
    want_status, want_matrix, want_attrs = oracle.apply(batch)
    assert result.status == want_status, label
    assert result.rows.tolist() == [i for i, s in enumerate(want_status) if s == APPLIED]
    assert_same_rows(result.matrix, want_matrix, label)
    assert result.attrs == want_attrs, label
    assert result.subscribers == list(dict.fromkeys(ev.subscriber_id for ev in batch))
    await commit(ledger, {}, {}, states=result.staged)
    store.remember(result, {})  # as the pipeline does once its commit is stored
    return result


async def run_stream(url: str | RedisTarget, events: Sequence[Event], seed: int, *,
                     restart_at: int | None = None, crash_at: int | None = None,
                     flush: bool = True, cache_size: int = 0, oracle: Oracle | None = None,
                     max_size: int = 40) -> tuple[Oracle, list]:
    """Feed the stream in random batches, committing each; compare every batch to the oracle.

    ``cache_size``: the store's state cache (0: none); restarts and crashes start it cold,
    and an uncommitted batch never reaches it.

    ``restart_at``: before that batch, throw away the client and store (same server).
    ``crash_at``: stage that batch without committing, then carry on with fresh clients and a
    *different* batching of the remaining events (a Kafka replay from the last commit)."""
    rng = random.Random(seed)
    target = url if isinstance(url, RedisTarget) else RedisTarget(url)
    client = target.client()
    if flush:
        await client.flushall()
    def fresh(client):  # noqa: ANN001, ANN202
        return FeatureStore(client, cache=StateCache(cache_size)), AlertLedger(client)

    (store, ledger), oracle = fresh(client), oracle or Oracle()
    outputs = []
    plan = batches(events, rng, max_size)
    k = 0
    pos = 0
    while k < len(plan):
        batch = plan[k]
        if k == restart_at or k == crash_at:
            await client.aclose()
            client = target.client()
            store, ledger = fresh(client)
        if k == crash_at:
            await store.stage(batch)  # staged, never committed: the worker died here
            await client.aclose()
            client = target.client()
            store, ledger = fresh(client)
            plan = plan[:k] + batches(events[pos:], random.Random(seed + 1))
            crash_at = None
            continue
        result = await stage_and_check(store, ledger, oracle, batch, f"batch {k}")
        outputs.append((result.status, result.matrix, result.attrs))
        pos += len(batch)
        k += 1
    # final state: read every subscriber at its clock and 40 days later (windows age)
    known = list(oracle.ref.subscribers)
    for now in (0, max(ev.ts for ev in events) + 40 * DAY_MS + 123):
        got = await store.read(known + ["never-seen"], now)
        assert set(got) == set(known)
        for sid in known:
            row, attrs = got[sid]
            assert_same_rows(row[None, :], oracle.ref.features(sid, now)[None, :],
                             f"read {sid} at {now}")
            assert attrs == oracle.ref.attrs(sid)
    await client.aclose()
    return oracle, outputs


def flat(outputs: list) -> tuple[str, np.ndarray, list]:
    status = "".join(o[0] for o in outputs)
    matrix = np.vstack([o[1] for o in outputs]) if outputs else np.empty((0, len(FEATURES)))
    attrs = [a for o in outputs for a in o[2]]
    return status, matrix, attrs




@pytest.mark.parametrize("cache_size", [0, 5, 10_000])
@pytest.mark.parametrize("seed", [1, 2])
def test_seeded_stream_matches_reference(redis_target: RedisTarget, seed: int,
                                         cache_size: int) -> None:
    events = random_stream(seed, SUBS if seed == 1 else MANY_SUBS, 900)
    oracle, outputs = asyncio.run(run_stream(redis_target, events, seed, cache_size=cache_size))
    status, _, _ = flat(outputs)
    # the stream really exercises every path
    assert status.count(APPLIED) > 600
    assert status.count(DUPLICATE) > 20
    assert status.count(LATE) > 10
    assert {ev.type for ev in events} == set(KIND_WEIGHTS)


@pytest.mark.parametrize("cache_size", [0, 10_000])
def test_a_subscriber_with_hundreds_of_ids_in_its_lateness_window(redis_url: str,
                                                                  cache_size: int) -> None:
    """Hundreds of events of one subscriber within a few days (every id kept, the kernel's
    per-subscriber scratch outgrown), out of order, re-sent, one batch of 300 among them."""
    rng = random.Random(11)
    kinds, weights = zip(*KIND_WEIGHTS.items())
    events = [make_event(rng, n, SUBS[0], rng.choices(kinds, weights)[0],
                         T0 + rng.randint(0, 3 * DAY_MS)) for n in range(700)]
    events[400:400] = rng.sample(events[:400], 60)  # re-sent, some into the big batch
    events.append(make_event(rng, 999, SUBS[1], "login", T0))
    oracle, outputs = asyncio.run(run_stream(redis_url, events[:300], 3, cache_size=cache_size))
    _, more = asyncio.run(run_stream(redis_url, events[300:], 4, flush=False,
                                     cache_size=cache_size, oracle=oracle, max_size=300))
    status, _, _ = flat(outputs + more)
    assert status.count(DUPLICATE) >= 60 and status.count(APPLIED) > 600


@pytest.mark.parametrize("cache_size", [0, 10_000])
def test_restart_and_crash_before_commit_give_the_clean_results(
        redis_target: RedisTarget, cache_size: int) -> None:
    events = random_stream(7, MANY_SUBS, 600)
    _, clean = asyncio.run(run_stream(redis_target, events, 7))
    _, restarted = asyncio.run(run_stream(redis_target, events, 7, restart_at=6,
                                          cache_size=cache_size))
    _, crashed = asyncio.run(run_stream(redis_target, events, 7, crash_at=9,
                                        cache_size=cache_size))
    for other in (restarted, crashed):
        a, b = flat(clean), flat(other)
        assert a[0] == b[0]
        assert np.array_equal(a[1], b[1], equal_nan=True)
        assert a[2] == b[2]


@pytest.mark.parametrize("cache_size", [0, 100])
def test_uncommitted_batch_is_invisible_and_restaging_is_identical(redis_url: str,
                                                                   cache_size: int) -> None:
    events = random_stream(11, SUBS[:2], 200)

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        store, ledger = FeatureStore(client, cache=StateCache(cache_size)), AlertLedger(client)
        head, tail = events[:150], events[150:]
        staged = await store.stage(head)
        await commit(ledger, {}, {}, states=staged.staged)
        store.remember(staged, {})
        assert len(store.cache) == (2 if cache_size else 0)
        keys = Keys()
        before = {s: await client.get(keys.state(s)) for s in SUBS[:2]}
        first = await store.stage(tail)  # not committed
        assert {s: await client.get(keys.state(s)) for s in SUBS[:2]} == before
        reads = await store.read(list(SUBS[:2]))
        second = await store.stage(tail)  # the replay after the crash
        assert first.status == second.status
        assert np.array_equal(first.matrix, second.matrix, equal_nan=True)
        assert first.attrs == second.attrs
        await commit(ledger, {}, {}, states=second.staged)
        # the reads before the commit saw the committed state only
        oracle = Oracle()
        oracle.apply(head)
        for sid, (row, _) in reads.items():
            assert_same_rows(row[None, :], oracle.ref.features(sid)[None, :], sid)
        await client.aclose()

    asyncio.run(go())


# ------------------------------------------------------------------ oracle: hypothesis
@st.composite
def streams(draw: st.DrawFn) -> list[Event]:
    n = draw(st.integers(1, 45))
    subs = SUBS[:draw(st.integers(1, 3))]
    rng = random.Random(draw(st.integers(0, 2**32)))
    out: list[Event] = []
    clock = T0 + draw(st.integers(0, 400)) * DAY_MS
    for i in range(n):
        if out and draw(st.integers(0, 9)) == 0:
            out.append(draw(st.sampled_from(out)))  # exact duplicate
            continue
        day = draw(st.integers(-40, 12))  # relative to a moving clock: late, in-order, ahead
        ms = draw(st.sampled_from([0, 1, DAY_MS - 1, DAY_MS // 2]) | st.integers(0, DAY_MS - 1))
        ts = clock - clock % DAY_MS + day * DAY_MS + ms
        if day > 0:
            clock = ts
        kind = draw(st.sampled_from(list(KIND_WEIGHTS)))
        out.append(make_event(rng, i, draw(st.sampled_from(subs)), kind, ts))
    return out


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(streams(), st.integers(0, 1000), st.sampled_from([0, 2, 10_000]))
def test_hypothesis_streams_match_reference(redis_url: str, events: list[Event],
                                            seed: int, cache_size: int) -> None:
    asyncio.run(run_stream(redis_url, events, seed, cache_size=cache_size))










NOW = utc("2026-06-15T12:00:00")




















# ------------------------------------------------------------------ memory
def test_state_stays_small_after_many_events(redis_url: str) -> None:
    """1000 subscribers × 100 events spread over ~300 days: pruned state stays under 1 KiB.

    Measured ~350-460 B. Without pruning of day buckets the state is ~1.7 KB, without pruning
    of seen event ids ~2.1 KB, so 1 KiB is generous yet fails if either pruning stops."""
    rng = random.Random(5)
    subs = [f"+4479{n:08d}" for n in range(1000)]
    events = []
    for n in range(100):
        for s in subs:
            ts = T0 + n * 3 * DAY_MS + rng.randint(0, 3 * DAY_MS - 1)  # ~300 days
            kind = rng.choice(["login", "login", "spend", "usage", "complaint"])
            events.append(make_event(rng, len(events), s, kind, ts))

    async def go() -> list[int]:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        store, ledger = FeatureStore(client), AlertLedger(client)
        for i in range(0, len(events), 5000):
            result = await store.stage(events[i:i + 5000])
            assert result.status == APPLIED * len(result.status)
            await commit(ledger, {}, {}, states=result.staged)
        keys = Keys()
        sizes = [await client.memory_usage(keys.state(s)) for s in subs]
        # the state blob is the subscriber's only key (no staging or side keys left behind)
        assert await client.keys(f"cw:{{{subs[0]}}}:*") == [keys.state(subs[0]).encode()]
        await client.aclose()
        return sizes

    sizes = asyncio.run(go())
    print(f"\nMEMORY USAGE per state key over {len(sizes)} subscribers × 100 events: "
          f"min {min(sizes)} B, mean {sum(sizes) / len(sizes):.0f} B, max {max(sizes)} B")
    assert max(sizes) < 1024


# ------------------------------------------------------------------ older state formats
def test_a_version_2_value_in_redis_is_read_staged_on_and_rewritten(redis_url: str) -> None:
    """A value of codec version 2 (each day and month bucket with its age) is read as the
    same state, a batch staged on it matches the oracle, and the commit stores version 3."""
    from features.codec import VERSION
    from tests.support.windows import v2_value

    rng = random.Random(11)
    old = sorted((make_event(rng, n, "s", rng.choice(["login", "spend", "complaint", "usage"]),
                             NOW - rng.randint(0, 40 * DAY_MS)) for n in range(80)),
                 key=lambda e: e.ts)
    clock = old[-1].ts
    new = [make_event(rng, 500, "s", "usage", clock - 3 * DAY_MS + 1),
           make_event(rng, 501, "s", "login", clock + DAY_MS), old[-3]]

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        store, ledger = FeatureStore(client), AlertLedger(client)
        oracle = Oracle()
        await stage_and_check(store, ledger, oracle, old, "version 3")
        value = await client.get(Keys().state("s"))
        assert value[0] == VERSION and len(v2_value(value)) > len(value)
        await client.set(Keys().state("s"), v2_value(value))
        store = FeatureStore(client)  # no cached copy: read from Redis
        for now in (0, clock + 29 * DAY_MS):
            row = (await store.read(["s"], now))["s"][0]
            assert_same_rows(row[None, :], oracle.ref.features("s", now)[None, :], str(now))
        await stage_and_check(store, ledger, oracle, new, "on version 2")
        assert (await client.get(Keys().state("s")))[0] == VERSION
        await client.aclose()

    asyncio.run(go())


def test_a_version_1_value_in_redis_is_read_staged_on_and_rewritten(redis_url: str) -> None:
    """A value the previous release stored (codec version 1: day buckets) is read as if its
    logins, spends and complaints happened at 00:00 UTC of their day; a batch staged on it is
    exact for its own events, and the commit stores version 2."""
    from features.codec import VERSION
    from tests.support.windows import _at_midnight, v1_value

    rng = random.Random(9)
    old = sorted((make_event(rng, n, "s", rng.choice(["login", "spend", "complaint", "usage"]),
                             NOW - rng.randint(0, 40 * DAY_MS)) for n in range(80)),
                 key=lambda e: e.ts)
    clock = old[-1].ts
    new = [make_event(rng, 500, "s", "login", clock - 7 * DAY_MS + 1),
           make_event(rng, 501, "s", "complaint", clock + DAY_MS),
           old[-3]]  # re-sent: a duplicate

    async def go() -> None:
        client = aioredis.Redis.from_url(redis_url)
        await client.flushall()
        await client.set(Keys().state("s"), v1_value(old))
        store, ledger = FeatureStore(client), AlertLedger(client)
        oracle = Oracle()
        for e in old:
            oracle.ref.apply(_at_midnight(e), features=False)
        oracle.ref.subscribers["s"].events.append(Event("clock", "s", "active", clock))
        for now in (0, clock + 29 * DAY_MS):
            row = (await store.read(["s"], now))["s"][0]
            assert_same_rows(row[None, :], oracle.ref.features("s", now)[None, :], str(now))
        await stage_and_check(store, ledger, oracle, new, "on version 1")
        assert (await client.get(Keys().state("s")))[0] == VERSION
        await client.aclose()

    asyncio.run(go())
