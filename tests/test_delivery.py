"""Pipeline.start: a batch's outputs are published while the next batch is processed, in
batch order, and an alert still being delivered is not sent again by a later batch that
replays its event (real pipeline and Redis, no Kafka)."""

from __future__ import annotations

import asyncio

import msgspec
import pytest

from alerting.alert import Alert
from churnwatch.core.events import Event
from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from streams.records import Record
from tests.support.label_oracle import Harness

pytestmark = pytest.mark.integration
T0 = 1_778_371_200_000 + 9 * 3_600_000  # 09:00 UTC
SUB = "+447700900123"


class GatedPublisher:
    """Publishes nothing until the test opens the gate of that call; records the order."""

    wants_scores = False

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gates: dict[str, asyncio.Event] = {}
        self.sent: list[Alert] = []

    def gate(self, name: str) -> asyncio.Event:
        return self.gates.setdefault(name, asyncio.Event())

    async def _through(self, kind: str, payloads: list[bytes]) -> None:
        self.calls.append(f"start {kind}")
        await self.gate(kind).wait()
        self.calls.append(f"end {kind}")

    async def dead_letters(self, payloads: list[bytes]) -> None:
        await self._through("dead_letters", payloads)

    async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
        await self._through("alerts", payloads)
        self.sent += alerts

    async def scores(self, payloads: list[bytes]) -> None:
        pass


def _records(offset: int, events: list[Event | bytes]) -> list[Record]:
    return [Record("churn.events", 0, offset + n,
                   ev if isinstance(ev, bytes) else msgspec.json.encode(ev))
            for n, ev in enumerate(events)]


def _unhappy_downgrader() -> list[Event]:
    """A downgrade, then two complaints: ``complaints_with_downgrade`` alerts on the second."""
    return [Event(event_id="p1", subscriber_id=SUB, type="plan_change", ts=T0, plan="plus",
                  monthly_fee=40.0),
            Event(event_id="d1", subscriber_id=SUB, type="plan_change", ts=T0 + DAY_MS,
                  plan="basic", monthly_fee=20.0),
            Event(event_id="c1", subscriber_id=SUB, type="complaint", ts=T0 + 2 * DAY_MS,
                  category="billing"),
            Event(event_id="c2", subscriber_id=SUB, type="complaint", ts=T0 + 3 * DAY_MS,
                  category="network")]


def test_next_batch_is_processed_while_the_previous_one_publishes_in_order(
        redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url)
        pipeline = await h.start()
        publisher = GatedPublisher()
        publisher.gate("dead_letters").set()
        first = await pipeline.start(_records(0, _unhappy_downgrader()), publisher)
        await asyncio.sleep(0.05)
        assert publisher.calls == ["start alerts"]  # c2's alert, blocked at the gate
        # the next batch is processed and committed meanwhile (its dead letters are
        # published before its commit) ...
        second = await asyncio.wait_for(
            pipeline.start(_records(4, [b"not json", b"{}"]), publisher), 30)
        await asyncio.wait_for(pipeline.commits.drain(), 30)
        assert not first.done() and not second.done()
        assert publisher.calls == ["start alerts", "start dead_letters", "end dead_letters"]
        publisher.gate("alerts").set()
        await asyncio.wait_for(asyncio.gather(first, second), 30)
        # ... and its delivery ends only after the first batch's outputs are out
        assert publisher.calls[-1] == "end alerts"
        assert [a.event_id for a in publisher.sent] == ["c2"]
        await h.stop()

    asyncio.run(main())


def test_dead_letters_are_published_before_the_batch_is_committed(redis_url: str) -> None:
    """A crash after the commit must not lose them: the applied offset covers their records,
    so a restarted worker skips those records as replays."""

    async def main() -> None:
        h = Harness(redis_url)
        pipeline = await h.start()
        publisher = GatedPublisher()  # the dead letters' gate stays closed
        started = asyncio.ensure_future(
            pipeline.start(_records(0, [b"not json", *_unhappy_downgrader()]), publisher))
        await asyncio.sleep(0.2)
        assert publisher.calls == ["start dead_letters"]
        assert await h.client.exists(Keys().state(SUB)) == 0  # nothing written meanwhile
        publisher.gate("dead_letters").set()
        publisher.gate("alerts").set()
        await asyncio.wait_for(await asyncio.wait_for(started, 30), 30)
        assert await h.client.exists(Keys().state(SUB)) == 1
        await h.stop()

    asyncio.run(main())


def test_a_replayed_event_does_not_resend_an_alert_still_being_delivered(
        redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url)
        pipeline = await h.start()
        publisher = GatedPublisher()
        events = _unhappy_downgrader()
        first = await pipeline.start(_records(0, events), publisher)
        await asyncio.sleep(0.05)
        assert publisher.calls == ["start alerts"]  # c2's alert: pending, being delivered
        second = await pipeline.start(_records(4, [events[-1]]), publisher)  # c2 again
        publisher.gate("alerts").set()
        await asyncio.wait_for(asyncio.gather(first, second), 30)
        assert [a.event_id for a in publisher.sent] == ["c2"]  # once
        assert (await second).replayed_alerts == 0
        # once delivered, it is no longer pending: a later replay finds nothing to send
        third = await pipeline.run(_records(5, [events[-1]]), publisher)
        assert third.replayed_alerts == 0 and [a.event_id for a in publisher.sent] == ["c2"]
        await h.stop()

    asyncio.run(main())


def test_an_undelivered_alert_is_sent_again_by_a_replay_after_a_failed_delivery(
        redis_url: str) -> None:
    """The filter covers only deliveries under way: one that failed leaves the alert pending,
    and the batch's replay (its messages were not acknowledged) sends it."""

    class Failing(GatedPublisher):
        async def alerts(self, alerts: list[Alert], payloads: list[bytes]) -> None:
            raise ConnectionError("broker down")

    async def main() -> None:
        h = Harness(redis_url)
        pipeline = await h.start()
        events = _unhappy_downgrader()
        with pytest.raises(ConnectionError):
            await pipeline.run(_records(0, events), Failing())
        publisher = GatedPublisher()
        publisher.gate("alerts").set()
        replay = await pipeline.run(_records(0, events), publisher)
        assert replay.replayed_alerts == 1 and [a.event_id for a in publisher.sent] == ["c2"]
        await h.stop()

    asyncio.run(main())


def test_batch_wait_is_the_oldest_message_age_at_the_batch_start(redis_url: str) -> None:
    async def main() -> None:
        h = Harness(redis_url)
        pipeline = await h.start()
        pipeline.clock = lambda: 1_800_000_000.0
        records = [Record("churn.events", 0, n, msgspec.json.encode(ev), ts)
                   for n, (ev, ts) in enumerate(zip(_unhappy_downgrader(),
                                                    [1_799_999_998_500, 1_799_999_999_900,
                                                     0, 1_799_999_999_000]))]
        publisher = GatedPublisher()
        publisher.gate("alerts").set()
        publisher.gate("dead_letters").set()
        await pipeline.run(records, publisher)
        await pipeline.run(_records(10, [b"{}"]), publisher)  # no timestamps: not observed
        wait = pipeline.metrics.batch_wait
        assert wait._sum.get() == pytest.approx(1.5)  # the oldest message, 1.5 s old
        assert sum(b.get() for b in wait._buckets) == 1
        await h.stop()

    asyncio.run(main())
