"""The worker's consuming loop: micro-batches from the record buffer through the pipeline,
their offsets committed to Kafka in order once their effects are durable.

Each batch is processed up to its Redis commit (``Pipeline.start``). Under a backlog (a full
batch or more waiting) the next batch is processed while the previous batch's outputs are
still being published (throughput); live, with less than a batch waiting, the next waits
until they are out (latency: the delivery's I/O does not queue behind a batch's processing
on the event loop). A batch's offsets are committed once its outputs are out and every
earlier batch's offsets are (:class:`~streams.batching.InOrderAcks`). The
Kafka commit is where a restarted consumer starts reading; which records were already
applied is known from the applied offsets the pipeline stores with the states in Redis, so
a commit that lags (or fails) costs a re-read, never a lost or repeated effect.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import msgspec

from churnwatch.infra.runtime.failpoints import failpoint
from streams.batching import InOrderAcks
from streams.commit import is_fenced, refusal
from streams.fetch import RecordBuffer
from streams.pipeline import Pipeline, Publisher
from streams.records import DeadLetter, Record, next_offsets

__all__ = ["BatchLoop"]

log = logging.getLogger("churnwatch.worker")

CommitOffsets = Callable[[Mapping[tuple[str, int], int]], Awaitable[Any]]


@dataclass
class _Batch:
    """A batch's records, the assignment it was taken in, and whether its effects landed."""

    records: list[Record]
    assignment: int
    landed: bool = True


class BatchLoop:
    """Takes micro-batches from ``records`` and runs them through ``pipeline``, one at a
    time, committing their offsets with ``commit`` in order.

    A batch fenced in the current assignment (its partition was claimed by another worker:
    this one stalled and lost it) means this worker's group membership is stale: nothing
    more is processed until the rebalance that follows, which assigns partitions afresh
    and re-reads them from their committed offsets (the fenced batches' never were).

    A batch Redis refused (credentials, ACL permissions: a misconfiguration) is not
    dead-lettered: no later batch is started or committed, and ``refused`` is called once
    (the worker stops with one line saying how to fix it); the records are read again by
    the next worker, once it is fixed.
    """

    def __init__(self, records: RecordBuffer, pipeline: Pipeline, publisher: Publisher,
                 commit: CommitOffsets,
                 refused: Callable[[BaseException], None] | None = None) -> None:
        self.records = records
        self.pipeline = pipeline
        self.publisher = publisher
        self._commit = commit
        self._on_refused = refused
        self.refused: BaseException | None = None  # Redis refused a batch: nothing more
        self._fenced_in: int | None = None  # the assignment in which a batch was fenced
        self._unsettled = 0  # batches taken and not yet committed
        self._settled = asyncio.Event()
        self._settled.set()
        self._task: asyncio.Task[Any] | None = None

    async def run(self) -> None:
        """Consume until cancelled; a batch under way is finished first (SIGTERM), and
        the batches whose outputs are out get their offsets committed."""
        self._task = asyncio.current_task()
        acks = InOrderAcks(self._committed)
        try:
            while True:
                if self.refused is not None:  # until the worker stops
                    await asyncio.Event().wait()
                if self._fenced_in == self.pipeline.partitions.count:
                    await self.pipeline.partitions.reassigned.wait()
                    continue
                records = await self.records.take()
                if not records:
                    continue
                # after a rebalance, the partitions' claims and applied offsets first (the
                # records may be fetched before they are loaded): what was applied is skipped
                await self.pipeline.partitions.ready.wait()
                self._unsettled += 1
                self._settled.clear()
                await _to_the_end(self._start(_Batch(records, self.pipeline.partitions.count), acks))
        finally:
            await acks.close()

    async def stop(self) -> None:
        """Stop :meth:`run` (its batch under way is finished and committed first)."""
        task, self._task = self._task, None
        if task is None or task.done():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    async def settle(self, timeout: float) -> bool:
        """Wait (at most ``timeout`` s) until every batch taken so far has its offsets
        committed: before partitions are given away. False on timeout."""
        try:
            await asyncio.wait_for(self._settled.wait(), timeout)
        except asyncio.TimeoutError:
            return False
        return True

    async def _committed(self, batch: _Batch) -> None:
        try:
            failpoint("before_offset_commit")  # the batch is done, its offsets not committed
            if batch.landed and self.refused is None:
                await self._commit(next_offsets(batch.records))
        finally:
            self._unsettled -= 1
            if not self._unsettled:
                self._settled.set()

    async def _start(self, batch: _Batch, acks: InOrderAcks) -> None:
        """Process a batch up to its commit and have its offsets committed once its outputs
        are published. On an unexpected error, of either part, the batch's records are
        dead-lettered instead of dropped."""
        try:
            delivery = await self.pipeline.start(batch.records, self.publisher)
        except Exception as exc:  # noqa: BLE001 - last line of defence before the commit
            if refusal(exc) is not None:  # no later batch is started (see run)
                self._refuse(exc)
            delivery = asyncio.get_running_loop().create_future()
            delivery.set_exception(exc)
        delivered = asyncio.ensure_future(self._delivered(delivery, batch))
        await acks.add(delivered, batch)
        if self.records.events < self.records.max_events:
            # live, not catching up: less than a batch waits, so this batch's alerts go out
            # before the next batch's processing takes the event loop (each of the
            # delivery's awaits would wait behind it); under a backlog the next batch is
            # processed while this one is delivered
            await asyncio.wait([delivered])

    async def _delivered(self, delivery: Awaitable[Any], batch: _Batch) -> None:
        pipeline = self.pipeline
        try:
            await delivery
        except Exception as exc:  # noqa: BLE001 - last line of defence before the commit
            if is_fenced(exc):  # nothing of it was written: its records are read again
                batch.landed = False
                pipeline.metrics.fenced_batches.inc()
                if batch.assignment == pipeline.partitions.count and self._fenced_in is None:
                    log.warning("a batch was fenced: another worker claimed a partition of "
                                "it; waiting for the rebalance")
                if batch.assignment == pipeline.partitions.count:
                    self._fenced_in = batch.assignment
                return
            if refusal(exc) is not None:  # a misconfiguration: stop, lose nothing
                batch.landed = False
                self._refuse(exc)
                return
            records = batch.records
            log.exception("batch of %d records failed; sending them to the dead-letter topic",
                          len(records))
            letters = [DeadLetter(f"internal error: {type(exc).__name__}", "internal",
                                  r.topic, r.partition, r.offset, -1,
                                  r.value.decode("utf-8", "replace")) for r in records]
            pipeline.metrics.dead_letters.labels("internal").inc(len(letters))
            await self.publisher.dead_letters([msgspec.json.encode(d) for d in letters])


    def _refuse(self, exc: BaseException) -> None:
        if self.refused is not None:
            return
        self.refused = exc
        if self._on_refused is not None:
            self._on_refused(exc)


async def _to_the_end(batch: Awaitable[None]) -> None:
    """Await ``batch`` even if the loop is cancelled meanwhile (SIGTERM: Faust cancels its
    tasks), so a stopping worker never leaves a batch half-processed; the cancellation is
    raised once the batch is committed and its delivery handed to the acknowledgements."""
    task = asyncio.ensure_future(batch)
    try:
        await asyncio.shield(task)
    except asyncio.CancelledError:
        log.info("stopping: finishing the current batch first")
        while not task.done():
            try:
                await asyncio.shield(task)
            except asyncio.CancelledError:
                continue
        raise
