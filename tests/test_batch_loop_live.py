"""The batch loop's two regimes: live (less than a batch waiting), a batch's delivery is done
before the next batch is taken; under a backlog, the next batch is processed while the
previous one is delivered. Offsets are committed in order either way."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from streams.batch_loop import BatchLoop
from streams.fetch import RecordBuffer
from streams.records import Record


class FakePipeline:
    """``start`` records each batch and returns a delivery the test completes."""

    def __init__(self) -> None:
        ready = asyncio.Event()
        ready.set()
        self.partitions = SimpleNamespace(count=1, ready=ready, reassigned=asyncio.Event())
        self.batches: list[list[int]] = []
        self.deliveries: list[asyncio.Future[None]] = []
        self.started = asyncio.Event()

    async def start(self, records: list[Record], publisher: Any) -> asyncio.Future[None]:
        self.batches.append([r.offset for r in records])
        delivery = asyncio.get_running_loop().create_future()
        self.deliveries.append(delivery)
        self.started.set()
        return delivery


def _records(first: int, n: int) -> list[Record]:
    return [Record("churn.events", 0, o, b'{"event_id": "x"}') for o in range(first, first + n)]


async def _until(predicate: Any, turns: int = 200) -> bool:
    for _ in range(turns):
        if predicate():
            return True
        await asyncio.sleep(0)
    return predicate()


def _run(scenario: Any) -> None:
    async def main() -> None:
        buffer = RecordBuffer(max_events=10, max_bytes=1 << 20, linger_s=0)
        pipeline = FakePipeline()
        committed: list[dict[tuple[str, int], int]] = []

        async def commit(offsets: Any) -> None:
            committed.append(dict(offsets))

        loop = BatchLoop(buffer, pipeline, publisher=None, commit=commit)  # type: ignore[arg-type]
        task = asyncio.ensure_future(loop.run())
        try:
            await scenario(buffer, pipeline, committed)
        finally:
            for d in pipeline.deliveries:
                if not d.done():
                    d.set_result(None)
            await loop.stop()
            task.cancel()

    asyncio.run(main())


def test_live_the_next_batch_waits_for_the_delivery() -> None:
    async def scenario(buffer: RecordBuffer, pipeline: FakePipeline, committed: list) -> None:
        await buffer.put(_records(0, 3))
        assert await _until(lambda: len(pipeline.batches) == 1)
        await buffer.put(_records(3, 3))  # less than a batch waits: live
        assert not await _until(lambda: len(pipeline.batches) == 2)
        pipeline.deliveries[0].set_result(None)
        assert await _until(lambda: len(pipeline.batches) == 2)
        assert pipeline.batches == [[0, 1, 2], [3, 4, 5]]
        assert await _until(lambda: committed == [{("churn.events", 0): 3}])

    _run(scenario)


def test_under_a_backlog_the_next_batch_runs_while_one_is_delivered() -> None:
    async def scenario(buffer: RecordBuffer, pipeline: FakePipeline, committed: list) -> None:
        await buffer.put(_records(0, 25))
        # a full batch still waits after the first: the second is processed meanwhile
        assert await _until(lambda: len(pipeline.batches) == 2)
        assert pipeline.batches == [list(range(10)), list(range(10, 20))]
        assert committed == []  # nothing delivered yet, nothing committed
        pipeline.deliveries[1].set_result(None)  # out of order: still committed in order
        assert not await _until(lambda: committed)
        pipeline.deliveries[0].set_result(None)
        assert await _until(lambda: committed == [{("churn.events", 0): 10},
                                                  {("churn.events", 0): 20}])

    _run(scenario)
