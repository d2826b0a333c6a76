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
from bisect import bisect_right
from collections import deque
from collections.abc import Iterable, Sequence
from itertools import accumulate, repeat

from streams.records import Record, value_of

__all__ = ["RecordBuffer", "estimate_events"]

_EVENT_ID = b'"event_id"'
_BRACE = b"{"


def estimate_events(value: bytes) -> int:
    """Events in a record's value, estimated without decoding it (at least 1)."""
    if value[:1] == _BRACE:
        return 1
    return max(1, value.count(_EVENT_ID))


class _Chunk:
    """The records of one put, from ``start`` on, with their running totals of events and
    bytes (so a batch takes a whole chunk, or a prefix of one found by bisection)."""

    __slots__ = ("bytes_to", "events_to", "records", "start")

    def __init__(self, records: list[Record]) -> None:
        values = list(map(value_of, records))
        self.records = records
        self.start = 0
        # one plain event a record (the common case) at C speed; else each record's estimate
        if all(map(bytes.startswith, values, repeat(_BRACE))):
            self.events_to: list[int] | None = None  # the n-th record ends at n + 1 events
        else:
            self.events_to = list(accumulate(map(estimate_events, values)))
        self.bytes_to = list(accumulate(map(len, values)))

    def __len__(self) -> int:
        return len(self.records) - self.start

    def events_before(self, i: int) -> int:
        """Events of records[:i]."""
        if i <= 0:
            return 0
        return i if self.events_to is None else self.events_to[i - 1]

    def bytes_before(self, i: int) -> int:
        return self.bytes_to[i - 1] if i > 0 else 0

    @property
    def events(self) -> int:
        return self.events_before(len(self.records)) - self.events_before(self.start)

    @property
    def size(self) -> int:
        return self.bytes_before(len(self.records)) - self.bytes_before(self.start)

    def fitting(self, events: int, size: int) -> int:
        """How many records from ``start`` fit in ``events`` more events and ``size`` more
        bytes."""
        base_e, base_b = self.events_before(self.start), self.bytes_before(self.start)
        end = len(self.records)
        by_bytes = bisect_right(self.bytes_to, base_b + size, self.start, end)
        if self.events_to is None:
            by_events = min(end, self.start + events)
        else:
            by_events = bisect_right(self.events_to, base_e + events, self.start, end)
        return max(0, min(by_bytes, by_events) - self.start)  # (a forced record overdrew)


class RecordBuffer:
    """Records fetched and not yet taken, in arrival order, bounded in events and bytes.

    A measured hot path: records are kept as the chunks they were put in, with running
    totals, so putting and taking a fetch of thousands of single-event records costs a few
    C-level passes instead of a Python step per record."""

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
        self._chunks: deque[_Chunk] = deque()
        self._records = 0
        self._events = 0
        self._bytes = 0
        self._epoch = 0  # bumped by drop(): puts waiting with older records discard them
        self._arrived = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()
        self._closed = False

    def __len__(self) -> int:
        return self._records

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
        self._add(list(records))

    def _add(self, records: list[Record]) -> None:
        if not records:
            return
        chunk = _Chunk(records)
        self._chunks.append(chunk)
        self._records += len(records)
        self._events += chunk.events
        self._bytes += chunk.size
        self._arrived.set()

    async def take(self) -> list[Record]:
        """The next micro-batch: what is buffered (up to the bounds) or, when nothing is,
        the first records to arrive plus those arriving within ``linger_s``."""
        if not self._chunks:
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
        """Records in order while they fit the bounds (at least one)."""
        chunks = self._chunks
        batch: list[Record] = []
        events = size = 0
        while chunks:
            chunk = chunks[0]
            n = chunk.fitting(self.max_events - events, self.max_bytes - size)
            if n == 0 and not batch:
                n = 1  # a record larger than a bound goes alone
            if n == 0:
                break
            start = chunk.start
            whole = n == len(chunk)
            e = chunk.events if whole else chunk.events_before(start + n) - chunk.events_before(start)
            b = chunk.size if whole else chunk.bytes_before(start + n) - chunk.bytes_before(start)
            batch += chunk.records[start:start + n]
            events += e
            size += b
            if whole:
                chunks.popleft()
            else:
                chunk.start += n
                break
        self._records -= len(batch)
        self._events -= events
        self._bytes -= size
        if not self._full():
            self._room.set()
        return batch

    def drop(self, partitions: Sequence[tuple[str, int]] | None = None) -> int:
        """Discard the buffered records of ``partitions`` (all when None), and the records
        of puts waiting for room; returns how many buffered records were discarded."""
        self._epoch += 1
        before = self._records
        if partitions is None:
            self._chunks.clear()
            self._records = self._events = self._bytes = 0
        else:
            gone = set(partitions)
            chunks = list(self._chunks)
            self._chunks.clear()
            self._records = self._events = self._bytes = 0
            for chunk in chunks:
                self._add([rec for rec in chunk.records[chunk.start:]
                           if (rec.topic, rec.partition) not in gone])
        self._room.set()
        return before - self._records

    def close(self) -> None:
        """Release waiting puts (their records are discarded)."""
        self._closed = True
        self._room.set()
