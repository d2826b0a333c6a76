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
batch's effects are durable.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import TypeVar

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
    finally:
        collector.cancel()
        with contextlib.suppress(asyncio.CancelledError):
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
