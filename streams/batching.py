"""In-order acknowledgements: a batch's offsets are committed once its delivery is done and
every earlier batch's are, while the next batch is already being processed."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any


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
