"""Risk score over time: one point per subscriber and event-time day, capped, in Redis."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
import redis.asyncio as aioredis

from alerting.decide import _risk
from alerting.risk import RiskHistory, pack, packed, unpack
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from tests.support.commits import record_risk
from tests.support.redis_target import RedisTarget

DAY = 86_400_000
T0 = 1_767_225_600_000  # a UTC midnight


def test_each_subscriber_keeps_its_last_row_of_each_day_in_event_order() -> None:
    triggers = [Event(event_id=str(n), subscriber_id=sid, type="login", ts=ts) for n, (sid, ts)
                in enumerate([("a", T0 + 1), ("a", T0 + DAY + 5), ("b", T0 + 2), ("a", T0 + 3),
                              ("b", T0 - DAY)])]
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5])
    severity = np.array([3, 0, 1, 2, 0])
    assert _risk(triggers, scores, severity) == {  # a late day comes last (the store skips it)
        "a": [(T0 + 3, 0.4, "medium"), (T0 + DAY + 5, 0.2, "")],
        "b": [(T0 + 2, 0.3, "low"), (T0 - DAY, 0.5, "")]}


def _risk_oracle(triggers, scores, severity):  # type: ignore[no-untyped-def]
    """The plain reading of _risk: a dict keyed by (subscriber, day), the last row wins."""
    last = {(ev.subscriber_id, ev.ts // DAY): j for j, ev in enumerate(triggers)}
    out: dict = {}
    for (sid, _), j in last.items():
        out.setdefault(sid, []).append((triggers[j].ts, float(scores[j]),
                                        ("", "low", "medium", "high")[int(severity[j])]))
    return out


def test_risk_points_match_the_plain_reading_and_pack_as_it_does() -> None:
    rng = np.random.default_rng(11)
    for _ in range(300):
        n = int(rng.integers(0, 60))
        subs = [f"s{int(k)}" for k in rng.integers(0, rng.integers(1, 9), n)]
        ts = [int(t) for t in T0 + rng.integers(-3 * DAY, 4 * DAY, n)]
        triggers = [Event(event_id=str(i), subscriber_id=s, type="login", ts=t)
                    for i, (s, t) in enumerate(zip(subs, ts))]
        scores, severity = rng.random(n), rng.integers(0, 4, n).astype(np.int8)
        points, want = _risk(triggers, scores, severity), _risk_oracle(triggers, scores, severity)
        assert dict(points) == want and list(points) == list(want)  # same points, same order
        # the columns packed as the general path packs the same points
        assert packed(points) == packed(dict(points)) == [
            b"".join(pack(t // DAY, s, sev) for t, s, sev in one) for one in want.values()]
    triggers = [Event(event_id="1", subscriber_id="a", type="login", ts=T0)]
    with pytest.raises(ValueError):  # a missing score is refused, as pack refuses it
        packed(_risk(triggers, np.array([np.nan]), np.array([1])))


def test_points_are_packed_at_once_as_one_by_one() -> None:
    rng = np.random.default_rng(12)
    odd = [0.0, -0.0, 1.0, -0.5, 1.5, float("inf"), float("-inf"), 1, 0, True,
           0.5 / 4_095, 2.5 / 4_095, 4_094.5 / 4_095]  # ties round to even, as round() does
    for _ in range(300):
        points = {f"s{k}": [(int(rng.integers(-2 * DAY, 70_000 * DAY)),
                             odd[rng.integers(len(odd))] if rng.random() < 0.3 else rng.random(),
                             ("", "low", "medium", "high")[rng.integers(4)])
                            for _ in range(rng.integers(0, 5))]
                  for k in range(rng.integers(0, 12))}
        assert packed(points) == [b"".join(pack(ts // DAY, score, sev) for ts, score, sev in s)
                                  for s in points.values()]
    # what pack refuses, packed refuses alike
    for bad, error in (((T0, float("nan"), ""), ValueError), ((T0, 0.5, "severe"), KeyError),
                       ((T0 + 0.5, 0.5, ""), struct.error), ((T0, "0.5", ""), TypeError),
                       ((2**70, 0.5, ""), None)):
        points = {"a": [(T0, 0.2, "low")], "b": [bad]}
        if error is None:
            assert packed(points) == [pack(T0 // DAY, 0.2, "low"), pack(2**70 // DAY, 0.5, "")]
            continue
        with pytest.raises(error):
            pack(bad[0] // DAY, bad[1], bad[2])
        with pytest.raises(error):
            packed(points)


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
    assert ttl == -1 and size == 2 + 3 * 3  # the last day, 3 bytes a point; no expiry


@pytest.mark.integration
def test_a_gap_of_1024_days_or_more_drops_the_points_before_it(redis_url: str) -> None:
    async def main() -> list[list[dict]]:
        client = aioredis.Redis.from_url(redis_url)
        await client.delete(Keys().risk("g"))
        risk = RiskHistory(client, cap=5)
        seen = []
        for batch in ([(T0, 0.1, "low"), (T0 + 1023 * DAY, 0.2, "")],   # 1,023 days: kept
                      [(T0 + 2047 * DAY, 0.3, "high"), (T0 + 2048 * DAY, 0.4, "")]):
            await record_risk(risk, {"g": batch})
            seen.append(await risk.read("g"))
        await client.aclose()
        return seen

    seen = asyncio.run(main())
    point = lambda day, score, sev: {"ts": T0 + day * DAY, "score": score, "severity": sev}  # noqa: E731
    assert seen == [[point(0, 0.1, "low"), point(1023, 0.2, None)],
                    [point(2047, 0.3, "high"), point(2048, 0.4, None)]]


def test_points_keep_their_days_severities_and_scores_to_three_decimals() -> None:
    days = [0, 1, 20_454, 65_535]
    scores = [0.0, 0.001, 0.123, 0.5, 0.999, 1.0]
    codes = ["", "low", "medium", "high"]
    series = [(day, score, sev) for day in days for score in scores for sev in codes]
    # one point per day as the script stores them: the last day, then (gap, score, severity)
    for day, score, sev in series:
        raw = pack(day, score, sev)
        assert len(raw) == 4
        d, qs = struct.unpack("<HH", raw)
        stored = struct.pack("<H", d) + (qs).to_bytes(3, "little")
        assert unpack(stored) == [{"ts": day * DAY, "score": score, "severity": sev or None}]
    assert struct.unpack("<HH", pack(-3, -0.5, "")) == (0, 0)  # clamped
    assert struct.unpack("<HH", pack(70_000, 2.0, "high")) == (65_535, 4095 << 2 | 3)
    gaps = struct.pack("<H", 100) + b"".join(  # days 97, 98, 100 (gaps 0, 1, 2)
        (gap << 14 | q << 2 | code).to_bytes(3, "little")
        for gap, q, code in [(0, 0, 0), (1, 4095, 3), (2, 2048, 1)])
    assert unpack(gaps) == [{"ts": 97 * DAY, "score": 0.0, "severity": None},
                            {"ts": 98 * DAY, "score": 1.0, "severity": "high"},
                            {"ts": 100 * DAY, "score": 0.5, "severity": "low"}]
    grid = np.linspace(0, 1, 1_001)
    back = [unpack(struct.pack("<H", 0) + (struct.unpack("<HH", pack(0, x, ""))[1]).to_bytes(
        3, "little"))[0]["score"] for x in grid]
    assert np.abs(np.array(back) - grid).max() < 1e-9  # every 3-decimal score comes back


@pytest.mark.integration
def test_a_legacy_history_is_read_then_converted_by_the_next_point(redis_url: str) -> None:
    legacy = lambda ts, score, code: struct.pack("<IHB", ts // 1000, score, code)  # noqa: E731
    old = b"".join([legacy(T0 + 5_000, 1234, 1), legacy(T0 + DAY + 7_000, 10_000, 3),
                    legacy(T0 + 2 * DAY + 9, 0, 0)])

    async def main() -> tuple[list[dict], list[dict], list[dict], list[dict], int, int, int]:
        client = aioredis.Redis.from_url(redis_url)
        keys = Keys()
        for sid in "suv":
            await client.delete(keys.risk(sid))
            await client.set(keys.legacy_risk(sid), old)
        risk = RiskHistory(client, cap=3)
        before = await risk.read("s")
        await record_risk(risk, {"s": [(T0 + 2 * DAY + 50, 0.6, "low"),   # replaces the last
                                       (T0 + 3 * DAY, 0.7, "medium")],    # then cut to 3
                                 "u": [(T0 + DAY, 0.1, "high")],           # earlier: ignored
                                 "v": [(T0 + 2 * DAY + 70, 0.5, "")]})     # replaces the last
        after = await risk.read("s")
        kept = await risk.read("u")
        replaced = await risk.read("v")
        gone = await client.exists(*(keys.legacy_risk(sid) for sid in "suv"))
        sizes = (await client.strlen(keys.risk("s")), await client.strlen(keys.risk("u")))
        await client.aclose()
        return before, after, kept, replaced, gone, *sizes

    before, after, kept, replaced, gone, size_s, size_u = asyncio.run(main())
    point = lambda day, score, sev: {"ts": T0 + day * DAY, "score": score, "severity": sev}  # noqa: E731
    assert before == [point(0, 0.1234, "low"), point(1, 1.0, "high"), point(2, 0.0, None)]
    assert after == [point(1, 1.0, "high"), point(2, 0.6, "low"), point(3, 0.7, "medium")]
    assert kept == [point(0, 0.123, "low"), point(1, 1.0, "high"), point(2, 0.0, None)]
    assert replaced == [point(0, 0.123, "low"), point(1, 1.0, "high"), point(2, 0.5, None)]
    assert gone == 0 and size_s == size_u == 2 + 3 * 3  # converted; the late point ignored


@pytest.mark.integration
def test_histories_and_legacy_keys_on_a_cluster(redis_cluster_server) -> None:
    """One script call per node takes each subscriber's history with its legacy key (one
    slot: the subscriber's hash tag)."""
    target = RedisTarget(redis_cluster_server.url, cluster=True)
    redis_cluster_server.flushall()
    subs = [f"+4477008{k:05d}" for k in range(60)]

    async def main() -> tuple[list[list[dict]], int]:
        client = target.client()
        try:
            keys = Keys()
            for sid in subs[:30]:  # half of them with a history of the earlier layout
                await client.set(keys.legacy_risk(sid), struct.pack("<IHB", T0 // 1000, 5000, 2))
            risk = RiskHistory(client, cap=10)
            await record_risk(risk, {sid: [(T0 + DAY, 0.25, "high")] for sid in subs})
            legacy = sum([await client.exists(keys.legacy_risk(sid)) for sid in subs])
            return [await risk.read(sid) for sid in subs], legacy
        finally:
            await client.aclose()

    read, legacy = asyncio.run(main())
    new = {"ts": T0 + DAY, "score": 0.25, "severity": "high"}
    assert read[:30] == [[{"ts": T0, "score": 0.5, "severity": "medium"}, new]] * 30
    assert read[30:] == [[new]] * 30 and legacy == 0


def _reference(history: list[tuple[int, int]], points: list[tuple[int, int]], cap: int
               ) -> list[tuple[int, int]]:
    """A subscriber's (day, quantised score << 2 | severity) points after one batch, plainly:
    a later day appends (a gap of 1,024 days or more drops what came before), the same day
    replaces the last point, an earlier day is ignored; the last ``cap`` points are kept."""
    out = list(history)
    added = False
    for day, qs in points:
        last = out[-1][0] if out else -1
        if day > last:
            if out and day - last >= 1024:
                out = []
            out.append((day, qs))
            added = True
        elif day == last:
            out[-1] = (day, qs)
    return out[-cap:] if added else out


@pytest.mark.integration
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_random_batches_of_points_match_a_plain_history(redis_url: str, seed: int) -> None:
    """Batches of one or several points per subscriber (same days, earlier days, long gaps),
    some subscribers starting from a legacy history: each stored history reads back as the
    plain reference's."""
    rng = np.random.default_rng(seed)
    subs = [f"r{seed}-{k}" for k in range(40)]
    cap = 5
    legacy = {sid: [(20_000 + d, int(rng.integers(0, 4096)) << 2 | int(rng.integers(0, 4)))
                    for d in sorted(rng.choice(30, size=3, replace=False).tolist())]
              for sid in subs[:8]}
    want: dict[str, list[tuple[int, int]]] = {sid: list(legacy.get(sid, []))[-cap:]
                                              for sid in subs}
    day = {sid: 20_020 for sid in subs}

    def scored(qs: int) -> tuple[float, str]:
        return (qs >> 2) / 4095, ("", "low", "medium", "high")[qs & 3]

    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        keys = Keys()
        await client.delete(*(keys.risk(s) for s in subs), *(keys.legacy_risk(s) for s in subs))
        for sid, points in legacy.items():  # 7-byte points: seconds, score × 10,000, code
            await client.set(keys.legacy_risk(sid), b"".join(
                struct.pack("<IHB", d * 86_400 + 7, round((qs >> 2) / 4095 * 10_000), qs & 3)
                for d, qs in points))
            want[sid] = [(d, round(round((qs >> 2) / 4095 * 10_000) * 4095 / 10_000) << 2
                          | (qs & 3)) for d, qs in points]
        risk = RiskHistory(client, cap=cap)
        touched: set[str] = set()  # (a legacy history reads in its own layout until then)
        for _ in range(25):
            batch: dict[str, list[tuple[int, float, str]]] = {}
            for sid in rng.choice(subs, size=25, replace=False).tolist():
                points = []
                for _ in range(int(rng.choice([1, 1, 1, 2, 4]))):
                    step = int(rng.choice([0, 0, 1, 1, 2, -1, -3, 1500]))
                    day[sid] = max(day[sid] + step, 0)
                    qs = int(rng.integers(0, 4096)) << 2 | int(rng.integers(0, 4))
                    points.append((day[sid], qs))
                batch[sid] = [(d * DAY + 1, *scored(qs)) for d, qs in points]
                want[sid] = _reference(want[sid], points, cap)
            await record_risk(risk, batch)
            touched.update(batch)
            for sid in sorted(touched):
                got = [(p["ts"] // DAY, p["score"], p["severity"]) for p in await risk.read(sid)]
                assert got == [(d, round((qs >> 2) / 4095, 3),
                                ("", "low", "medium", "high")[qs & 3] or None)
                               for d, qs in want[sid]], sid
        await client.aclose()

    asyncio.run(main())
