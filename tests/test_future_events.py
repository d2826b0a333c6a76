"""An event from a clock ahead of the worker's (a producer's broken clock, ``ts`` in 2099) is
dead-lettered as ``future``: it moves neither its subscriber's clock (the subscriber's next
genuine events are applied, not dead-lettered as late) nor its partition's watermark (the
silence sweep does not expire the partition's subscribers)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from churnwatch.core.events import Event
from churnwatch.core.units import DAY_MS
from streams.intake import future_letters
from streams.records import Record
from tests.support.label_oracle import Collector, Harness

NOW_MS = 1_790_000_000_000
SUB, OTHER = "+447700900123", "+447700900456"


class Letters(Collector):
    def __init__(self) -> None:
        super().__init__()
        self.letters: list[dict] = []

    async def dead_letters(self, payloads: list[bytes]) -> None:
        self.letters += [msgspec.json.decode(p) for p in payloads]


def _login(n: int, sid: str, ts: int) -> Event:
    return Event(event_id=f"e{n}", subscriber_id=sid, type="login", ts=ts)


def test_future_letters_keep_events_up_to_the_limit() -> None:
    events = [_login(0, SUB, 100), _login(1, SUB, 101), _login(2, OTHER, 99)]
    records = [Record("churn.events", 2, 40, b""), Record("churn.events", 2, 41, b"")]
    kept, origins, letters = future_letters(events, [0, 1, 1], records, 100)
    assert kept == [events[0], events[2]] and origins == [0, 1]
    [letter] = letters
    assert (letter.kind, letter.partition, letter.offset) == ("future", 2, 41)
    assert msgspec.json.decode(letter.payload)["event_id"] == "e1"
    assert "CHURNWATCH_FUTURE_TOLERANCE_S" in letter.reason
    assert future_letters(events, [0, 1, 1], records, 101) == (events, [0, 1, 1], [])


@pytest.mark.integration
def test_an_event_from_2099_changes_no_clock_and_expires_nobody(redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url, publisher=Letters())
        pipeline = await h.start()
        pipeline.clock = lambda: NOW_MS / 1000
        await pipeline.store.redis.flushdb()
        await h.run([_login(0, SUB, NOW_MS - 3 * DAY_MS), _login(1, OTHER, NOW_MS - DAY_MS)])
        year_2099 = 4_070_908_800_000
        await h.run([_login(2, SUB, year_2099)])
        await h.run([_login(3, SUB, NOW_MS - 2 * DAY_MS)])  # genuine, two days old

        letters = h.publisher.letters
        assert [(d["kind"], msgspec.json.decode(d["payload"])["event_id"]) for d in letters] \
            == [("future", "e2")]
        clocks = (await pipeline.store.snapshot([SUB], 0)).clocks
        assert clocks[SUB] == NOW_MS - 2 * DAY_MS  # e3 applied; e2 left no trace
        watermark, _due = await pipeline.silence.due(pipeline.store.redis, 0, 100)
        assert watermark is not None and watermark < NOW_MS
        swept = await pipeline.sweep(0, h.publisher)
        assert "expired" not in swept.outcomes
        assert set((await pipeline.store.read([SUB, OTHER])).keys()) == {SUB, OTHER}
        await h.stop()

    asyncio.run(main())


def test_the_tolerance_is_one_day_by_default_and_configurable() -> None:
    from churnwatch.infra.config import Settings
    from features.store import StoreConfig

    assert StoreConfig().future_ms == DAY_MS
    assert Settings(future_tolerance_s=3600).future_tolerance_s == 3600
