"""Batch commits landing in order while the next batches stage.

A batch's commit is one Redis round trip (``alerting.ledger``), and redis-server does its
work on another core. Waiting for it before staging the next batch leaves the worker idle
for that time; :class:`CommitChain` instead sends the commit and, while redis-server applies
it, puts the staged batch in the state cache, pinned (``StateCache.put(pin=True)``), so the
next batch stages on it; the commits land one after the other in the background.

The rules that keep it exact:

- commits are sent in order, each after the previous one landed (Redis applies them in the
  order they were staged);
- at most ``depth`` commits are under way; :meth:`CommitChain.submit` waits for the oldest
  before starting another;
- without a state cache (capacity 0) there is nothing to stage on: each commit lands
  before :meth:`~CommitChain.submit` returns;
- if the state cache is cleared (partitions moved) while commits are under way, the next
  batch must not read their subscribers from Redis before they land: call
  :meth:`~CommitChain.ready` before staging (it also raises once the chain is broken);
- if a commit fails, the state cache is cleared and no later batch is committed: each was
  staged on the failed one. Every later :meth:`~CommitChain.submit` and the pending commits
  raise :class:`CommitChainBroken`; the caller replays from the last landed batch, with a
  new chain (the store re-reads the states from Redis).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from churnwatch.core.errors import StoreError
from features.store import BatchFeatures, FeatureStore

__all__ = ["CommitChain", "CommitChainBroken"]


class CommitChainBroken(StoreError):
    """An earlier batch's commit failed, so this batch (staged on it) was not committed."""


class CommitChain:
    """Lands staged batches' commits in order, ``depth`` at a time, over ``store``'s cache."""

    def __init__(self, store: FeatureStore, depth: int = 1) -> None:
        if depth < 1:
            raise ValueError("depth must be >= 1")
        self.store = store
        self.depth = depth
        self.failure: BaseException | None = None
        self._landing: deque[asyncio.Task[Any]] = deque()
        self._generation = store.cache.generation  # the cache's, when the last was pinned

    async def submit(self, staged: BatchFeatures, entries: Mapping[str, Mapping[str, Any]],
                     write: Callable[[], Awaitable[Any]]) -> asyncio.Task[Any]:
        """Start landing ``staged`` with ``write`` (the batch's commit) once the commits
        before it landed, and pin it (with its cooldown ``entries``) in the cache once the
        commit is sent. Returns the landing task (its result is ``write``'s)."""
        while len(self._landing) >= self.depth:
            await asyncio.wait([self._landing.popleft()])
        self._raise_if_broken()
        cache = self.store.cache
        pins: list[int] = []  # the batch's pin token, once it is put
        previous = self._landing[-1] if self._landing else None
        task = asyncio.ensure_future(self._land(previous, pins, write))
        task.add_done_callback(_retrieve)  # its failure is raised by drain / later submits
        self._landing.append(task)
        self._generation = staged.generation
        if not cache.capacity:
            await asyncio.wait([task])
            task.result()  # its own error, if it failed
            return task
        # redis-py checks a pooled connection (a zero-timeout read) before it sends: a loop
        # turn or two; let the commit go out, then pin the batch while redis-server works
        for _ in range(4):
            await asyncio.sleep(0)
        pins.append(cache.put(staged.generation, staged.staged, entries, staged.ledgers,
                              pin=True))
        if task.done():  # landed (or failed) already: nothing to keep pinned
            cache.unpin(pins[0])
        return task

    async def ready(self) -> None:
        """Call before staging a batch: waits for the commits under way if the cache was
        cleared since they were pinned (the batch would read their subscribers from Redis),
        and raises :class:`CommitChainBroken` if a commit failed."""
        self._raise_if_broken()
        if self._landing and self._generation != self.store.cache.generation:
            await self.drain()

    @property
    def under_way(self) -> int:
        """Commits submitted and not landed yet."""
        return sum(not task.done() for task in self._landing)

    async def drain(self) -> None:
        """Wait until every submitted commit landed; raises the first failure."""
        while self._landing:
            await asyncio.wait([self._landing.popleft()])
        self._raise_if_broken()

    def _raise_if_broken(self) -> None:
        if self.failure is not None:
            raise CommitChainBroken("an earlier batch's commit failed; replay from the last "
                                    "landed batch with a new CommitChain") from self.failure

    async def _land(self, previous: asyncio.Task[Any] | None, pins: list[int],
                    write: Callable[[], Awaitable[Any]]) -> Any:
        if previous is not None and not previous.done():  # (waiting on a done one yields)
            await asyncio.wait([previous])
        self._raise_if_broken()
        try:
            result = await write()
        except BaseException as exc:
            if self.failure is None:
                self.failure = exc
            self.store.cache.clear()  # it holds this batch and the ones staged on it
            raise
        if pins:
            self.store.cache.unpin(pins[0])
        return result


def _retrieve(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()
