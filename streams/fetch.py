"""Fetched records waiting for the pipeline: a bounded buffer filled by the Kafka fetch.

The worker's consumer hands over ``churn.events`` records a fetch at a time (a list per
partition, see ``streams.transport``), not a message at a time through Faust's stream: a
fetch of thousands of single-event messages costs a few µs per record to get here, instead of
Faust's ~70 µs per message. :class:`RecordBuffer` keeps them in arrival order and hands out
micro-batches bounded in *events* and *bytes*:

- under a backlog, a batch is whatever is buffered, up to ``max_events`` / ``max_bytes``
  (so per-batch fixed costs are paid once per thousands of events);
- when the topic is quiet, the first record waits at most ``linger_s`` for others.

It is bounded too: :meth:`RecordBuffer.put` waits while it holds more than
``capacity_events`` or ``capacity_bytes`` (back-pressure on the fetch loop). On a rebalance
:meth:`RecordBuffer.drop` discards the records of revoked partitions; a put that was waiting
for room with records of an older assignment discards them as well.

The event count of a record is an estimate made without decoding it: 1 for a single JSON
object, the number of ``"event_id"`` keys for an array or NDJSON. It only sizes batches.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Iterable, Sequence

from streams.records import Record

__all__ = ["RecordBuffer", "estimate_events"]

_EVENT_ID = b'"event_id"'


def estimate_events(value: bytes) -> int:
    """Events in a record's value, estimated without decoding it (at least 1)."""
    if value[:1] == b"{":
        return 1
    return max(1, value.count(_EVENT_ID))


class RecordBuffer:
    """Records fetched and not yet taken, in arrival order, bounded in events and bytes."""

    def __init__(self, max_events: int, max_bytes: int, linger_s: float,
                 capacity_events: int | None = None,
                 capacity_bytes: int | None = None) -> None:
        if max_events < 1 or max_bytes < 1:
            raise ValueError("max_events and max_bytes must be at least 1")
        self.max_events = max_events
        self.max_bytes = max_bytes
        self.linger_s = linger_s
        self.capacity_events = capacity_events or 4 * max_events
        self.capacity_bytes = capacity_bytes or 2 * max_bytes
        self._items: deque[tuple[Record, int]] = deque()  # (record, estimated events)
        self._events = 0
        self._bytes = 0
        self._epoch = 0  # bumped by drop(): puts waiting with older records discard them
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._items)

    @property
    def events(self) -> int:
        """Estimated events buffered."""
        return self._events

    def _full(self) -> bool:
        return self._events >= self.capacity_events or self._bytes >= self.capacity_bytes

    @property
    def epoch(self) -> int:
        """Bumped by every :meth:`drop`: a fetch started before it returns stale records."""
        return self._epoch

    async def put(self, records: Iterable[Record], epoch: int | None = None) -> None:
        """Buffer ``records`` (one partition's, in offset order), after waiting for room;
        discarded if :meth:`drop` was called since ``epoch`` (default: now)."""
        epoch = self._epoch if epoch is None else epoch
        while self._full() and not self._closed:
            self._room.clear()
            await self._room.wait()
        if epoch != self._epoch or self._closed:  # a rebalance dropped their partitions
            return
        items = self._items
        events = size = 0
        for rec in records:
            n = estimate_events(rec.value)
            items.append((rec, n))
            events += n
            size += len(rec.value)
        self._events += events
        self._bytes += size
        if items:
            self._arrived.set()

    async def take(self) -> list[Record]:
        """The next micro-batch: what is buffered (up to the bounds) or, when nothing is,
        the first records to arrive plus those arriving within ``linger_s``."""
        if not self._items:
            self._arrived.clear()
            await self._arrived.wait()
            if self._events < self.max_events and self._bytes < self.max_bytes:
                await self._fill(self.linger_s)
        return self._pop()

    async def _fill(self, linger_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + linger_s
        while self._events < self.max_events and self._bytes < self.max_bytes:
            left = deadline - loop.time()
            if left <= 0:
                return
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), left)
            except asyncio.TimeoutError:
                return

    def _pop(self) -> list[Record]:
        items = self._items
        batch: list[Record] = []
        events = size = 0
        while items:
            rec, n = items[0]
            if batch and (events + n > self.max_events or size + len(rec.value) > self.max_bytes):
                break
            items.popleft()
            batch.append(rec)
            events += n
            size += len(rec.value)
        self._events -= events
        self._bytes -= size
        if not self._full():
            self._room.set()
        return batch

    def drop(self, partitions: Sequence[tuple[str, int]] | None = None) -> int:
        """Discard the buffered records of ``partitions`` (all when None), and the records
        of puts waiting for room; returns how many buffered records were discarded."""
        self._epoch += 1
        if partitions is None:
            dropped = len(self._items)
            self._items.clear()
            self._events = self._bytes = 0
        else:
            gone = set(partitions)
            kept = deque(item for item in self._items
                         if (item[0].topic, item[0].partition) not in gone)
            dropped = len(self._items) - len(kept)
            self._items = kept
            self._events = sum(n for _, n in kept)
            self._bytes = sum(len(rec.value) for rec, _ in kept)
        self._room.set()
        return dropped

    def close(self) -> None:
        """Release waiting puts (their records are discarded)."""
        self._closed = True
        self._room.set()
