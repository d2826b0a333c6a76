"""The worker's Faust app, with a consumer that hands ``churn.events`` over a fetch at a time.

Faust stays the runtime: lifecycle, the consumer group and its rebalances, timers. Two
things of its aiokafka driver are changed, and only these:

- **Fetches, not messages.** Faust turns every fetched record into a message and an event
  and runs it through its stream machinery (~70 µs per Kafka message, whatever the
  settings), then tracks and commits offsets per acknowledged message. For the topics in
  ``app.record_topics``, :meth:`_Consumer.getmany` instead puts each partition's fetched
  records into the app's :class:`~streams.fetch.RecordBuffer` as plain
  :class:`~streams.records.Record` values (a few µs each) and yields nothing to Faust, so
  Faust never tracks, acknowledges or commits them: the worker's batch loop
  (``streams.batch_loop``) commits their offsets itself, in order, once a batch's effects
  are durable. Other topics go through Faust as usual.
- **Undecodable record batches.** A batch aiokafka cannot decode becomes marker records,
  dead-lettered by the pipeline (``streams.undecodable``), instead of an error that stops
  the partition.
- **Fetch wait.** Faust hard-codes ``fetch_max_wait_ms=1500``. Tansu (the embedded broker)
  holds a fetch that finds nothing until that wait runs out, so a record produced just after
  an empty fetch would wait up to 1.5 s; ``fetch_max_wait_ms`` sets it.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP

from streams import undecodable
from streams.fetch import RecordBuffer
from streams.records import Record

__all__ = ["ChurnApp"]


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        undecodable.install()  # a batch the client cannot decode: markers, not an error
        consumer = super()._create_worker_consumer(transport)
        if not hasattr(consumer, "_fetch_max_wait_ms"):  # guards the pinned aiokafka internals
            raise RuntimeError("aiokafka no longer has _fetch_max_wait_ms; "
                               "update streams/transport.py for this aiokafka version")
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> _ConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def getmany(self, timeout: float) -> AsyncIterator[tuple[TP, Any]]:
        """Faust's fetch step: records of ``app.record_topics`` go to ``app.records`` by
        partition (waiting for room there: back-pressure), the others to Faust."""
        app = self.app
        buffer: RecordBuffer | None = getattr(app, "records", None)
        if buffer is None:
            async for item in super().getmany(timeout):
                yield item
            return
        records, active = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        # records fetched while the flow was active (a rebalance stops it, and seeks after);
        # a rebalance while they wait for room below discards them (they are fetched again)
        epoch = buffer.epoch
        if not self.flow_active:  # a rebalance began: Faust seeks back to the committed offsets
            with contextlib.suppress(Exception):
                await self.perform_seek()
            return
        own = app.record_topics
        for tp, fetched in records.items():
            if active is not None and tp not in active and tp not in self._buffered_partitions:
                continue
            if tp.topic in own:
                await buffer.put([Record(r.topic, r.partition, r.offset, r.value or b"",
                                         r.timestamp, r.headers) for r in fetched], epoch)
            else:
                for record in fetched:
                    yield tp, self._to_message(tp, record)

    async def commit_offsets(self, offsets: Mapping[tuple[str, int], int]) -> bool:
        """Commit ``offsets`` (topic, partition → next offset to read) of assigned
        partitions; False if none was committed (e.g. they were revoked meanwhile)."""
        return await self._commit({TP(topic, partition): offset
                                   for (topic, partition), offset in offsets.items()})


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class ChurnApp(faust.App):
    """``faust.App`` with ``fetch_max_wait_ms`` for its worker consumer, and ``records``:
    where the consumer puts the fetched records of ``record_topics`` (None: Faust's path)."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int = 1500,
                 records: RecordBuffer | None = None,
                 record_topics: frozenset[str] = frozenset(), **kwargs: Any) -> None:
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.records = records
        self.record_topics = record_topics
        # awaited first when the app stops, while the consumer can still commit
        self.before_stop: list[Callable[[], Awaitable[None]]] = []
        super().__init__(*args, **kwargs)

    async def on_stop(self) -> None:
        for hook in self.before_stop:
            await hook()
        await super().on_stop()

    def _new_transport(self) -> _Transport:
        return _Transport(self.conf.broker_consumer, self)
