"""Which worker owns a partition's states, kept in Redis to fence a worker that lost it.

Kafka's consumer group decides who consumes a partition, but a worker that stalls past its
session timeout (a long GC pause, SIGSTOP, a frozen VM) learns that it lost its partitions
only when it resumes, and by then it may be committing a batch it staged before. Its states
would overwrite the newer ones of the partition's new owner (a lost update).

So every assignment *claims* its partitions: a fresh token per worker and assignment is
written to one hash (``Keys.partition_owners``) before anything is read. Every batch commit
``WATCH``es that hash, checks that it still holds this worker's token for each partition of
the batch, and writes the batch in ``MULTI``/``EXEC``: if another worker claimed one of them
in between, the commit is refused (:class:`~churnwatch.errors.FencedError`) and nothing of it
is written. redis-py also reports a connection lost while watching as a ``WatchError``: the
claims are then read again, and the commit is retried if they are still this worker's. On a
single Redis only (a Redis Cluster cannot watch a key across slots).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from typing import Any

from redis.exceptions import WatchError

from churnwatch.errors import FencedError

__all__ = ["PartitionOwners", "WatchError", "partition_field"]

Partition = tuple[str, int]


def partition_field(tp: Partition) -> str:
    """The hash field of a partition: ``<topic>:<partition>`` (claims and applied offsets)."""
    return f"{tp[0]}:{tp[1]}"


class PartitionOwners:
    """This worker's claims on partitions, in the Redis hash ``key``."""

    def __init__(self, redis: Any, key: str, member: str) -> None:
        self.redis = redis
        self.key = key
        self.member = member
        self.tokens: dict[Partition, str] = {}

    @property
    def owned(self) -> frozenset[Partition]:
        return frozenset(self.tokens)

    async def claim(self, partitions: Sequence[Partition]) -> None:
        """Own ``partitions`` (just assigned) from now on; forget every other claim."""
        token = f"{self.member}:{uuid.uuid4().hex[:12]}"
        self.tokens = {tp: token for tp in partitions}
        if self.tokens:
            await self.redis.hset(self.key,
                                  mapping={partition_field(tp): token for tp in self.tokens})

    def _lost(self, tps: list[Partition], current: list[bytes | None]) -> list[Partition]:
        """Of ``tps``, those whose current claim (``current``, as read) is not this worker's."""
        return [tp for tp, value in zip(tps, current)
                if tp not in self.tokens or value is None or value.decode() != self.tokens[tp]]

    async def holds(self, partitions: Iterable[Partition]) -> bool:
        """Whether this worker's claims on ``partitions`` are still the current ones."""
        tps = list(partitions)
        return not self._lost(tps, await self.redis.hmget(self.key,
                                                          [partition_field(tp) for tp in tps]))

    async def watch(self, pipe: Any, partitions: Iterable[Partition]) -> None:
        """``WATCH`` the claims on ``pipe`` (a transaction pipeline) and check that this
        worker holds ``partitions``; the caller then calls ``pipe.multi()`` and queues the
        batch. Raises :class:`FencedError` (after resetting ``pipe``) if it does not."""
        tps = list(partitions)
        await pipe.watch(self.key)
        lost = self._lost(tps, await pipe.hmget(self.key, [partition_field(tp) for tp in tps]))
        if lost:
            await pipe.reset()
            raise FencedError("partitions claimed by another worker: "
                              + ", ".join(partition_field(tp) for tp in lost))
