"""The replay (``streams.replay``, what ``churnwatch evaluate`` runs) runs the worker's
silence sweep on event time: a subscriber who goes quiet is re-scored at the partition's
watermark, the re-score becomes a snapshot, and the snapshot's label (a later ``churn``, or
survival past the horizon) is learned, as in a worker."""

from __future__ import annotations

import asyncio
import itertools

import msgspec
import redis as syncredis
import redis.asyncio as aioredis

from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from online_models.snapshots import LabelPolicy
from streams.records import Record
from streams.replay import Replay, replay, report

T0 = 1_735_689_600_000  # 2025-01-01T00:00:00Z, in the past: no event is ahead of the clock
QUIET, SURVIVOR, KEEPER = "+447700900001", "+447700900002", "+447700900003"
CHURN_DAY, LAST_DAY = 40, 90


def _feed() -> list[Record]:
    """Three subscribers of one partition: ``QUIET`` sends its profile, then nothing until it
    churns on day 40; ``SURVIVOR`` sends its profile and nothing else; ``KEEPER`` logs in
    daily to day 90, which moves the partition's watermark."""
    events = [Event(f"{QUIET}-p", QUIET, "profile", T0, tenure_months=12.0,
                    attrs={"monthly_charges": 80.0}),
              Event(f"{SURVIVOR}-p", SURVIVOR, "profile", T0 + 3_600_000, tenure_months=3.0,
                    attrs={"monthly_charges": 30.0}),
              Event(f"{KEEPER}-p", KEEPER, "profile", T0 + 7_200_000, tenure_months=30.0,
                    attrs={"monthly_charges": 50.0}),
              Event(f"{QUIET}-c", QUIET, "churn", T0 + CHURN_DAY * DAY_MS, reason="port-out")]
    events += [Event(f"{KEEPER}-l{d}", KEEPER, "login", T0 + d * DAY_MS + 60_000)
               for d in range(1, LAST_DAY + 1)]
    events.sort(key=lambda ev: ev.ts)
    return [Record("churn.events", 0, k, msgspec.json.encode(ev)) for k, ev in enumerate(events)]


def _replay(url: str, sweep_every_ms: int | None) -> Replay:
    syncredis.Redis.from_url(url).flushall()

    async def run() -> Replay:
        client = aioredis.Redis.from_url(url)
        try:
            return await replay(client, _feed(), batch=5, policy=LabelPolicy(),
                                sweep_every_ms=sweep_every_ms)
        finally:
            await client.aclose()

    return asyncio.run(run())


def _learned(run: Replay, sid: str) -> list[tuple[int, bool, bool]]:
    """(snapshot day, churned, the snapshot is a sweep's re-score) of ``sid``'s examples."""
    return sorted(((ex.snapshot_ts - T0) // DAY_MS, ex.churned,
                   (ex.subscriber_id, ex.snapshot_ts) in run.swept)
                  for ex in run.examples if ex.subscriber_id == sid)


def test_quiet_subscribers_snapshots_from_the_sweep_are_learned(redis_url: str) -> None:
    run = _replay(redis_url, 0)
    quiet = _learned(run, QUIET)
    # the profile's snapshot, then one re-score per 14-day snapshot period while quiet; the
    # churn on day 40 labels them all (within the 60-day horizon)
    assert quiet[0] == (0, True, False)
    swept = [day for day, churned, by_sweep in quiet if by_sweep]
    assert len(swept) >= 2 and all(0 < day <= CHURN_DAY for day in swept), quiet
    assert all(churned for _, churned, _ in quiet)
    # never heard of again: the sweep's clock labels its snapshots by survival (horizon 60
    # days + lateness 7) — the profile's and the re-scores' older than 23 days by day 90
    survivor = _learned(run, SURVIVOR)
    assert survivor[0] == (0, False, False)
    assert any(by_sweep for _, _, by_sweep in survivor), survivor
    assert not any(churned for _, churned, _ in survivor)
    # each learned re-score is paired with the score the sweep published for it
    # (prequential), and the report counts them apart from the events' snapshots
    quality = report(run)
    n_swept = sum((ex.subscriber_id, ex.snapshot_ts) in run.swept for ex in run.examples)
    assert quality["examples_unscored"] == 0
    assert quality["examples_of_sweeps"] == n_swept >= 3
    assert quality["all_learned"]["overall"]["n"] == len(run.examples)
    assert quality["overall"]["n"] == len(run.examples) - n_swept


def test_without_the_sweep_only_events_take_snapshots(redis_url: str) -> None:
    run = _replay(redis_url, None)
    assert run.swept == set() and run.sweeps == 0
    assert _learned(run, QUIET) == [(0, True, False)]  # the profile's snapshot alone
    assert _learned(run, SURVIVOR) == []  # nothing moves its clock: never labelled
    assert report(run)["examples_of_sweeps"] == 0


def test_sweeps_follow_event_time_not_batches(redis_url: str) -> None:
    every = 30 * DAY_MS
    run = _replay(redis_url, every)
    times = sorted({ts for _, ts in run.swept})
    assert times, "the quiet subscribers were re-scored"
    assert all(b - a >= every for a, b in itertools.pairwise(times)), times
    eager = _replay(redis_url, 0)
    assert len({ts for _, ts in eager.swept}) > len(times)


def test_replay_with_the_sweep_is_deterministic(redis_url: str) -> None:
    first, again = _replay(redis_url, 0), _replay(redis_url, 0)
    assert [(ex.id, ex.churned) for ex in first.examples] == \
        [(ex.id, ex.churned) for ex in again.examples]
    assert first.scores == again.scores and first.swept == again.swept
