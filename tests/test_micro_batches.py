"""streams.fetch.RecordBuffer: micro-batches of fetched records (order, bounds in events and
bytes, linger, back-pressure, rebalances); streams.batching: in-order acknowledgements."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.batching import InOrderAcks
from streams.fetch import RecordBuffer, estimate_events
from streams.records import Record


def _recs(partition: int, offsets: range, value: bytes = b'{"event_id":"x"}') -> list[Record]:
    return [Record("churn.events", partition, o, value) for o in offsets]


def test_estimate_events_counts_single_and_packed_values() -> None:
    assert estimate_events(b'{"event_id":"a","type":"login"}') == 1
    assert estimate_events(b'[{"event_id":"a"},{"event_id":"b"}]') == 2
    assert estimate_events(b'{"event_id":"a"}\n{"event_id":"b"}\n') == 1  # starts as one object
    assert estimate_events(b'  \n{"event_id":"a"}\n{"event_id":"b"}') == 2
    assert estimate_events(b"not json") == 1


def test_a_backlog_is_taken_at_once_up_to_the_event_bound() -> None:
    async def main() -> list[list[int]]:
        buf = RecordBuffer(max_events=4, max_bytes=1 << 20, linger_s=3600)
        await buf.put(_recs(0, range(10)))
        return [[r.offset for r in await buf.take()] for _ in range(3)]

    assert asyncio.run(main()) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]


def test_packed_records_count_their_events_and_bytes_bound_a_batch() -> None:
    async def main() -> tuple[list[int], list[int], list[int]]:
        packed = b"[" + b",".join([b'{"event_id":"e"}'] * 3) + b"]"
        buf = RecordBuffer(max_events=7, max_bytes=1 << 20, linger_s=3600)
        await buf.put(_recs(0, range(4), packed))  # 3 events each: two fit under 7
        by_events = [r.offset for r in await buf.take()]
        small = RecordBuffer(max_events=1000, max_bytes=40, linger_s=3600)
        await small.put(_recs(1, range(3), b"x" * 16))
        by_bytes = [r.offset for r in await small.take()]
        huge = RecordBuffer(max_events=1000, max_bytes=10, linger_s=3600)
        await huge.put(_recs(2, range(2), b"y" * 50))  # larger than the bound: one at a time
        alone = [r.offset for r in await huge.take()]
        return by_events, by_bytes, alone

    assert asyncio.run(main()) == ([0, 1], [0, 1], [0])


def test_a_quiet_topic_lingers_for_company_then_yields_what_it_has() -> None:
    async def main() -> list[int]:
        buf = RecordBuffer(max_events=100, max_bytes=1 << 20, linger_s=0.05)

        async def later() -> None:
            await buf.put(_recs(0, range(1)))
            await asyncio.sleep(0.01)
            await buf.put(_recs(0, range(1, 3)))

        feeder = asyncio.ensure_future(later())
        batch = await buf.take()
        await feeder
        return [r.offset for r in batch]

    assert asyncio.run(main()) == [0, 1, 2]


def test_put_waits_for_room_and_a_rebalance_discards_what_waited() -> None:
    async def main() -> tuple[bool, list[int], int]:
        buf = RecordBuffer(max_events=2, max_bytes=1 << 20, linger_s=0,
                           capacity_events=3)
        await buf.put(_recs(0, range(3)))
        waiting = asyncio.ensure_future(buf.put(_recs(0, range(3, 5))))
        await asyncio.sleep(0.01)
        blocked = not waiting.done()
        first = [r.offset for r in await buf.take()]  # room again: the put goes in
        await asyncio.wait_for(waiting, 1)
        stale = asyncio.ensure_future(buf.put(_recs(1, range(2)), epoch=buf.epoch))
        await asyncio.sleep(0)
        dropped = buf.drop([("churn.events", 0)])
        await asyncio.wait_for(stale, 1)
        return blocked, first, dropped + len(buf)

    blocked, first, left = asyncio.run(main())
    assert blocked and first == [0, 1]
    assert left == 3  # records 2, 3, 4 of partition 0 dropped; the stale put kept nothing


def test_drop_keeps_other_partitions_in_order() -> None:
    async def main() -> list[tuple[int, int]]:
        buf = RecordBuffer(max_events=100, max_bytes=1 << 20, linger_s=0)
        for p in (0, 1, 2):
            await buf.put(_recs(p, range(3)))
        assert buf.drop([("churn.events", 1)]) == 3
        assert buf.events == 6
        return [(r.partition, r.offset) for r in await buf.take()]

    assert asyncio.run(main()) == [(0, 0), (0, 1), (0, 2), (2, 0), (2, 1), (2, 2)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.integers(1, 30), st.integers(1, 4)),
                max_size=12),
       st.integers(1, 9), st.integers(20, 400))
def test_every_record_once_in_order_within_the_bounds(puts: list[tuple[int, int, int]],
                                                      max_events: int, max_bytes: int) -> None:
    """Whatever the puts (partition, records, events per record), the batches hand out every
    record once, in put order, each batch within both bounds unless it is a single record."""

    async def main() -> tuple[list[Record], list[list[Record]]]:
        buf = RecordBuffer(max_events, max_bytes, linger_s=0.001, capacity_events=50)
        sent: list[Record] = []
        next_offset = [0, 0, 0, 0]
        for partition, n, per in puts:
            value = b"[" + b",".join([b'{"event_id":"e"}'] * per) + b"]"
            recs = _recs(partition, range(next_offset[partition], next_offset[partition] + n),
                         value)
            next_offset[partition] += n
            sent += recs

        async def produce() -> None:
            i = 0
            for partition, n, _ in puts:
                await buf.put(sent[i:i + n])
                i += n

        producer = asyncio.ensure_future(produce())
        batches: list[list[Record]] = []
        got = 0
        while got < len(sent):
            batch = await buf.take()
            batches.append(batch)
            got += len(batch)
        await producer
        return sent, batches

    sent, batches = asyncio.run(main())
    assert [r for b in batches for r in b] == sent
    for batch in batches:
        if len(batch) > 1:
            assert sum(estimate_events(r.value) for r in batch) <= max_events
            assert sum(len(r.value) for r in batch) <= max_bytes


def test_acks_in_order_once_each_delivery_is_done() -> None:
    async def main() -> list[list[int]]:
        acked: list[list[int]] = []

        async def ack(items: list[int]) -> None:
            acked.append(items)

        acks = InOrderAcks(ack, ahead=2)
        loop = asyncio.get_running_loop()
        first, second = loop.create_future(), loop.create_future()
        await acks.add(first, [1, 2])
        await acks.add(second, [3])
        second.set_result(None)  # done first, acknowledged second
        await asyncio.sleep(0.01)
        assert acked == []
        first.set_result(None)
        await acks.close()
        return acked

    assert asyncio.run(main()) == [[1, 2], [3]]


def test_acks_hold_back_a_batch_while_ahead_deliveries_are_under_way() -> None:
    async def main() -> None:
        acks = InOrderAcks(lambda items: asyncio.sleep(0), ahead=1)
        loop = asyncio.get_running_loop()
        deliveries = [loop.create_future() for _ in range(3)]
        await acks.add(deliveries[0], [0])
        await acks.add(deliveries[1], [1])
        third = asyncio.ensure_future(acks.add(deliveries[2], [2]))
        await asyncio.sleep(0.01)
        assert not third.done()  # two under way: the third batch waits
        deliveries[0].set_result(None)
        await asyncio.wait_for(third, 30)
        for d in deliveries[1:]:
            d.set_result(None)
        await acks.close()

    asyncio.run(main())


def test_a_failed_delivery_stops_the_acks_and_is_raised() -> None:
    async def main() -> list[list[int]]:
        acked: list[list[int]] = []

        async def ack(items: list[int]) -> None:
            acked.append(items)

        acks = InOrderAcks(ack, ahead=3)
        loop = asyncio.get_running_loop()
        bad, later = loop.create_future(), loop.create_future()
        await acks.add(bad, [1])
        await acks.add(later, [2])
        bad.set_exception(RuntimeError("dead letters unpublished"))
        later.set_result(None)
        with pytest.raises(RuntimeError, match="unpublished"):
            await acks.close()
        with pytest.raises(RuntimeError, match="unpublished"):
            await acks.add(loop.create_future(), [3])
        return acked

    assert asyncio.run(main()) == []


class _ReferenceBuffer:
    """The record-at-a-time buffer the chunked one must equal: a deque of records, a batch
    taken greedily while each next record fits both bounds (at least one record)."""

    def __init__(self, max_events: int, max_bytes: int) -> None:
        self.max_events, self.max_bytes = max_events, max_bytes
        self.items: list[Record] = []

    def put(self, records: list[Record]) -> None:
        self.items += records

    def take(self) -> list[Record]:
        batch: list[Record] = []
        events = size = 0
        while self.items:
            rec = self.items[0]
            n = estimate_events(rec.value)
            if batch and (events + n > self.max_events or size + len(rec.value) > self.max_bytes):
                break
            batch.append(self.items.pop(0))
            events += n
            size += len(rec.value)
        return batch

    def drop(self, partitions: set[tuple[str, int]]) -> int:
        kept = [r for r in self.items if (r.topic, r.partition) not in partitions]
        dropped, self.items = len(self.items) - len(kept), kept
        return dropped


_values = st.sampled_from([
    b'{"event_id":"a","type":"login"}',  # one plain event
    b'{"event_id":"a","type":"usage","data_mb":12.5,"note":"a longer record of more bytes"}',
    b'[{"event_id":"a"},{"event_id":"b"},{"event_id":"c"}]',  # packed: 3 events
    b'{"event_id":"a"}\n{"event_id":"b"}',  # NDJSON starting as an object: 1
    b'  \n{"event_id":"a"}\n{"event_id":"b"}',  # NDJSON: 2
    b"", b"not json", b"x" * 300,  # empty, invalid, larger than small byte bounds
])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(
    st.tuples(st.just("put"), st.integers(0, 2), st.lists(_values, min_size=0, max_size=9)),
    st.tuples(st.just("take"), st.just(0), st.just([])),
    st.tuples(st.just("drop"), st.integers(0, 2), st.just([]))), max_size=30),
    st.integers(1, 12), st.integers(1, 700))
def test_batches_are_those_of_the_record_at_a_time_buffer(
        steps: list[tuple[str, int, list[bytes]]], max_events: int, max_bytes: int) -> None:
    """Any interleaving of puts (any values), takes and drops gives the batches, counts and
    sizes of the plain record-at-a-time buffer."""

    async def main() -> None:
        buf = RecordBuffer(max_events, max_bytes, linger_s=0.0, capacity_events=10**9,
                           capacity_bytes=10**9)
        ref = _ReferenceBuffer(max_events, max_bytes)
        offsets = [0, 0, 0]
        for op, partition, values in steps:
            if op == "put":
                recs = [Record("churn.events", partition, offsets[partition] + i, v)
                        for i, v in enumerate(values)]
                offsets[partition] += len(values)
                await buf.put(recs)
                ref.put(recs)
            elif op == "take" and ref.items:
                assert await buf.take() == ref.take()
            elif op == "drop":
                assert buf.drop([("churn.events", partition)]) == ref.drop(
                    {("churn.events", partition)})
            assert len(buf) == len(ref.items)
            assert buf.events == sum(estimate_events(r.value) for r in ref.items)
        while ref.items:
            assert await buf.take() == ref.take()
        assert len(buf) == 0 and buf.events == 0

    asyncio.run(main())


def test_records_that_fill_a_bound_exactly_are_taken_together() -> None:
    async def main() -> tuple[list[int], list[int]]:
        by_bytes = RecordBuffer(max_events=100, max_bytes=32, linger_s=3600)
        await by_bytes.put(_recs(0, range(3), b"x" * 16))  # 16 + 16 = the bound
        by_events = RecordBuffer(max_events=6, max_bytes=1 << 20, linger_s=3600)
        packed = b"[" + b",".join([b'{"event_id":"e"}'] * 3) + b"]"
        await by_events.put(_recs(1, range(3), packed))  # 3 + 3 = the bound
        return ([r.offset for r in await by_bytes.take()],
                [r.offset for r in await by_events.take()])

    assert asyncio.run(main()) == ([0, 1], [0, 1])
