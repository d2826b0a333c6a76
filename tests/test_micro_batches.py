"""streams.batching: micro-batches (order, bounds, back-pressure, errors, batches formed
while the previous one is processed) and in-order acknowledgements after delivery."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings, strategies as st

from streams.batching import InOrderAcks, micro_batches


class Source:
    """Items released by the test (``release``), then an optional error or the end."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[object] = asyncio.Queue()
        self.pulled = 0

    def release(self, *items: object) -> None:
        for item in items:
            self.queue.put_nowait(item)

    def __aiter__(self) -> AsyncIterator[object]:
        return self._items()

    async def _items(self) -> AsyncIterator[object]:
        while True:
            item = await self.queue.get()
            if item is StopAsyncIteration:
                return
            if isinstance(item, Exception):
                raise item
            self.pulled += 1
            yield item


def test_what_arrives_while_a_batch_is_processed_is_the_next_batch_at_once() -> None:
    """The linger is an hour: the first batch forms because it filled up; every later one
    forms from what arrived while the previous batch was processed, without lingering."""

    async def main() -> list[list[object]]:
        source = Source()
        source.release(*range(4))
        batches = micro_batches(aiter(source), max_size=4, linger_s=3600)
        out = [await anext(batches)]
        source.release(4, 5, 6)  # arrive while batch 1 is "processed"
        out.append(await asyncio.wait_for(anext(batches), 30))
        source.release(7)
        out.append(await asyncio.wait_for(anext(batches), 30))
        await batches.aclose()
        return out

    assert asyncio.run(main()) == [[0, 1, 2, 3], [4, 5, 6], [7]]


def test_a_quiet_stream_lingers_for_company_then_yields_what_it_has() -> None:
    async def main() -> list[object]:
        source = Source()
        batches = micro_batches(aiter(source), max_size=100, linger_s=0.05)
        waiting = asyncio.ensure_future(anext(batches))
        await asyncio.sleep(0.01)
        assert not waiting.done()  # nothing arrived yet
        source.release("a", "b")
        return await asyncio.wait_for(waiting, 30)

    assert asyncio.run(main()) == ["a", "b"]


def test_collector_stops_pulling_at_max_size() -> None:
    async def main() -> None:
        source = Source()
        source.release(*range(50))
        batches = micro_batches(aiter(source), max_size=8, linger_s=0)
        first = await anext(batches)
        for _ in range(5):
            await asyncio.sleep(0)
        assert first == list(range(8))
        assert source.pulled <= 8 + 8  # the batch out, at most one full buffer waiting
        await batches.aclose()

    asyncio.run(main())


def test_source_error_is_raised_after_the_items_before_it() -> None:
    async def main() -> list[object]:
        source = Source()
        source.release(1, 2, RuntimeError("broker gone"))
        got: list[object] = []
        with pytest.raises(RuntimeError, match="broker gone"):
            async for batch in micro_batches(aiter(source), max_size=10, linger_s=0.01):
                got += batch
        return got

    assert asyncio.run(main()) == [1, 2]


def test_rejects_an_empty_batch_size() -> None:
    async def main() -> None:
        with pytest.raises(ValueError, match="max_size"):
            await anext(micro_batches(aiter(Source()), max_size=0, linger_s=0))

    asyncio.run(main())


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(1, 30), max_size=12), st.integers(1, 9),
       st.lists(st.integers(0, 3), min_size=1, max_size=12))
def test_every_item_once_in_order_within_the_bound(bursts: list[int], max_size: int,
                                                   work: list[int]) -> None:
    """Bursts of items arrive while batches take a varying number of loop turns to process."""

    async def main() -> tuple[list[int], list[list[int]]]:
        source = Source()
        expected = list(range(sum(bursts)))
        start = 0
        batches: list[list[int]] = []
        stream = micro_batches(aiter(source), max_size=max_size, linger_s=0.001)
        for n, burst in enumerate(bursts):
            source.release(*range(start, start + burst))
            start += burst
            for _ in range(work[n % len(work)]):
                await asyncio.sleep(0)
        source.release(StopAsyncIteration)
        async for batch in stream:
            batches.append(batch)
            for _ in range(work[len(batches) % len(work)]):
                await asyncio.sleep(0)
        return expected, batches

    expected, batches = asyncio.run(main())
    assert [item for batch in batches for item in batch] == expected
    assert all(1 <= len(batch) <= max_size for batch in batches)


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


def test_closing_early_after_a_source_error_raises_nothing() -> None:
    async def main() -> None:
        source = Source()
        source.release(1, RuntimeError("broker gone"))
        batches = micro_batches(aiter(source), max_size=10, linger_s=0.01)
        assert await anext(batches) == [1]
        await asyncio.sleep(0.02)  # the collector has failed meanwhile
        await batches.aclose()  # the consumer stops without asking for more

    asyncio.run(main())
