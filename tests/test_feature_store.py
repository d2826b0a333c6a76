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
from features.schema import FEATURES, as_dict
from features.store import APPLIED, DUPLICATE, LATE, FeatureStore
from rules.engine import evaluate_reference
from rules.ruleset import load_ruleset
from tests.support.commits import commit
from tests.support.feature_oracle import (
    KIND_WEIGHTS,
    MANY_SUBS,
    SUBS,
    T0,
    Oracle,
    assert_same_rows,
    batches,
    ev,
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


NOW = utc("2026-06-15T12:00:00")


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
