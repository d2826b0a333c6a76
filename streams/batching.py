"""Micro-batches from a stream of events, formed while the previous batch is processed.

Faust's ``take_events`` stops filling its buffer while the agent processes a batch, then
waits its full ``within`` for the next one however many events are already queued. Under a
steady load that is dead time in every cycle: at 50,000 events/s the worker idled ~20 ms of
each ~175 ms batch cycle, and since events arrive during that wait too, a cycle's length
grows with it (see ``benchmarks/bench_e2e.py``, latency window).

:func:`micro_batches` keeps a collector task pulling events into a buffer at all times (the
batch's Redis and Kafka waits give it turns), up to ``max_size`` events (then it stops
pulling: back-pressure), and hands out

- everything collected while the previous batch was processed, at once; or,
- when nothing was, the first event that arrives plus those arriving within ``linger_s``
  (or until ``max_size``), so a quiet stream still forms batches of more than one event.

It knows nothing of Kafka: acknowledging a batch's events is the caller's job, after the
batch's effects are durable; :class:`InOrderAcks` does it in order while the next batch is
already being processed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

T = TypeVar("T")


class _Buffer:
    """Events collected so far, with the signals the batcher and the collector wait on."""

    def __init__(self, max_size: int) -> None:
        self.items: list = []
        self.max_size = max_size
        self.arrived = asyncio.Event()  # not empty
        self.full = asyncio.Event()
        self.room = asyncio.Event()  # below max_size: the collector may pull again
        self.room.set()

    def add(self, item: object) -> None:
        self.items.append(item)
        self.arrived.set()
        if len(self.items) >= self.max_size:
            self.full.set()
            self.room.clear()

    def take(self) -> list:
        batch, self.items = self.items[:self.max_size], self.items[self.max_size:]
        if not self.items:
            self.arrived.clear()
        if len(self.items) < self.max_size:
            self.full.clear()
            self.room.set()
        return batch


async def micro_batches(source: AsyncIterator[T], max_size: int,
                        linger_s: float) -> AsyncIterator[list[T]]:
    """Batches of at most ``max_size`` items of ``source``, in order, each item once. An
    error of ``source`` is raised after the items collected before it; its end ends the
    batches after the last ones."""
    if max_size < 1:
        raise ValueError("max_size must be at least 1")
    buffer = _Buffer(max_size)

    async def collect() -> None:
        async for item in source:
            buffer.add(item)
            if not buffer.room.is_set():
                await buffer.room.wait()

    collector = asyncio.ensure_future(collect())
    try:
        while True:
            await asyncio.sleep(0)  # the collector takes what is already queued
            if not buffer.items:
                await _first_of(buffer.arrived.wait(), collector)
                if buffer.items and not collector.done():
                    await _first_of(buffer.full.wait(), collector, timeout=linger_s)
            if buffer.items:
                yield buffer.take()
            elif collector.done():
                collector.result()  # the source's error, if it failed
                return
    finally:  # the consumer stopped, or the source's error was raised above
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await collector


async def _first_of(waiting: object, collector: asyncio.Future,
                    timeout: float | None = None) -> None:
    """Wait for ``waiting`` (a coroutine), the collector's end, or ``timeout``."""
    task = asyncio.ensure_future(waiting)  # type: ignore[arg-type]
    try:
        await asyncio.wait({task, collector}, timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
    finally:
        task.cancel()


class InOrderAcks:
    """Acknowledges batches in order, each once its delivery (an awaitable) is done, so
    the next batch can be processed while the previous one's outputs are published.

    :meth:`add` waits while ``ahead`` deliveries are already under way (back-pressure) and
    raises the error of a delivery that failed; after a failure nothing more is
    acknowledged (the failed batch's messages must be consumed again).
    """

    def __init__(self, ack: Callable[[list[Any]], Awaitable[None]], ahead: int = 1) -> None:
        self._ack = ack
        self._room = asyncio.Semaphore(ahead + 1)  # the one being acknowledged, plus ahead
        self._queue: asyncio.Queue[tuple[Awaitable[Any], list[Any]]] = asyncio.Queue()
        self._failure: BaseException | None = None
        self._worker: asyncio.Task[None] | None = None

    async def add(self, delivery: Awaitable[Any], items: list[Any]) -> None:
        """Acknowledge ``items`` once ``delivery`` is done."""
        self._raise_failure()
        if self._worker is None:
            self._worker = asyncio.ensure_future(self._acknowledge())
        await self._room.acquire()
        self._raise_failure()
        self._queue.put_nowait((delivery, items))

    async def close(self) -> None:
        """Wait for the deliveries under way and acknowledge them (also when cancelled)."""
        if self._worker is None:
            return
        done = asyncio.ensure_future(self._queue.join())
        while not done.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(done)
        self._worker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._worker
        self._raise_failure()

    def _raise_failure(self) -> None:
        if self._failure is not None:
            raise self._failure

    async def _acknowledge(self) -> None:
        while True:
            delivery, items = await self._queue.get()
            try:
                if self._failure is None:
                    await delivery
                    await self._ack(items)
            except Exception as exc:  # noqa: BLE001 - raised to the caller by add/close
                self._failure = exc
            finally:
                self._room.release()
                self._queue.task_done()
