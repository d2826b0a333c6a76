"""Which worker owns a partition's states, kept in Redis to fence a worker that lost it.

Kafka's consumer group decides who consumes a partition, but a worker that stalls past its
session timeout (a long GC pause, SIGSTOP, a frozen VM) learns that it lost its partitions
only when it resumes, and by then it may be committing a batch it staged before. Its states
would overwrite the newer ones of the partition's new owner (a lost update).

So every assignment *claims* its partitions: a fresh token per worker and assignment is
written to one hash (``Keys.partition_owners``) before anything is read. Every batch commit
``WATCH``es that hash, checks that it still holds this worker's token for each partition of
the batch, and writes the batch in ``MULTI``/``EXEC``: if another worker claimed one of them
in between, the commit is refused (:class:`~churnwatch.core.errors.FencedError`) and nothing of it
is written. A connection lost while watching is retried like any outage: the retry
watches and reads the claims again. On a
single Redis only (a Redis Cluster cannot watch a key across slots).

The same transaction fences the worker's own earlier attempts. A commit whose reply was lost
(a timeout, a dropped connection) is sent again, but its first copy may still be on its way:
held by a proxy or a stalled link, it can reach Redis after the retry, and after later
batches, and would put their subscribers' states back. So every fenced write bumps a write
counter per partition it touches (``<applied offsets key>:writes:<topic>:<partition>``, next
to the hash of applied offsets, ``Keys.applied_offsets``), and :class:`WriteFence` also
``WATCH``es those counters: of the copies of one write, the first to run makes every other
one abort, and a copy whose retry finds the batch's offsets already stored knows it landed.

The counters are per partition so that the workers of a group do not abort each other: a
commit watches only its own partitions' counters (and the claims, which change only on a
rebalance), not the one hash every worker's commits write.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from churnwatch.core.errors import FencedError, RedisUnavailable
from churnwatch.infra.redis.errors import WatchError
from churnwatch.infra.redis.transaction import WatchedTransaction
from churnwatch.infra.redis.writes import Command

__all__ = ["Partition", "PartitionOwners", "WatchError", "WriteFence", "partition_field"]

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

    def lost(self, tps: list[Partition], current: list[bytes | None]) -> list[Partition]:
        """Of ``tps``, those whose current claim (``current``, as read) is not this worker's."""
        return [tp for tp, value in zip(tps, current)
                if tp not in self.tokens or value is None or value.decode() != self.tokens[tp]]

    async def holds(self, partitions: Iterable[Partition]) -> bool:
        """Whether this worker's claims on ``partitions`` are still the current ones."""
        tps = list(partitions)
        return not self.lost(tps, await self.redis.hmget(self.key,
                                                          [partition_field(tp) for tp in tps]))


WRITES_FIELD = "writes"  # the counter of fenced writes that touch no partition


class WriteFence:
    """Makes each of the worker's writes one ``MULTI``/``EXEC`` that runs at most once and
    only while this worker holds the partitions: it ``WATCH``es the claims (``owners``) and
    the write counters of the partitions written, and bumps them (a write to no partition:
    the ``writes`` field of the applied-offsets hash ``applied_key``).

    Use, on a :class:`~churnwatch.infra.redis.transaction.WatchedTransaction` ``tx``:
    ``if await fence.open(tx, partitions, target):`` execute the writes followed by
    :meth:`close`'s; on :class:`WatchError` raise :meth:`refused`.
    """

    def __init__(self, owners: PartitionOwners, applied_key: str) -> None:
        self.owners = owners
        self.applied_key = applied_key

    def counter(self, tp: Partition) -> str:
        """The key counting the fenced writes to partition ``tp``."""
        return f"{self.applied_key}:writes:{partition_field(tp)}"

    def _watched(self, tps: Sequence[Partition]) -> list[str]:
        return [self.counter(tp) for tp in tps] or [self.applied_key]

    async def open(self, tx: WatchedTransaction, partitions: Iterable[Partition],
                   target: Mapping[Partition, int], scripts: Sequence[Any] = ()) -> bool:
        """Watch and check, in one round trip on ``tx``, a write to ``partitions`` that
        stores the applied offsets ``target`` (and runs ``scripts``, loaded if missing).
        False if a copy of this write already landed (every offset of ``target`` is stored:
        nothing to do). Raises :class:`FencedError` if another worker claimed one of the
        partitions, or if a partition's stored offset is past ``target``."""
        tps = sorted(set(partitions) | set(target))
        fields = [partition_field(tp) for tp in tps]
        reads = [("HMGET", self.owners.key, *fields)] if tps else []
        if target:  # read after the WATCH: consistent with the watched counters
            reads.append(("HMGET", self.applied_key, *fields))
        replies = await tx.watch([self.owners.key, *self._watched(tps)], reads, scripts)
        lost = self.owners.lost(tps, replies[0]) if tps else []
        if lost:
            raise FencedError("partitions claimed by another worker: "
                              + ", ".join(partition_field(tp) for tp in lost))
        if target:
            stored = dict(zip(tps, replies[1]))
            now = {tp: int(stored[tp]) if stored[tp] is not None else -1 for tp in target}
            if all(now[tp] == offset for tp, offset in target.items()):
                return False
            ahead = [tp for tp, offset in target.items() if now[tp] > offset]
            if ahead:
                raise FencedError("records past this batch were applied to "
                                  + ", ".join(partition_field(tp) for tp in ahead))
        return True

    def close(self, partitions: Iterable[Partition],
              target: Mapping[Partition, int]) -> list[Command]:
        """The writes to run last in the transaction: store the applied offsets ``target``
        and bump the write counters of ``partitions`` and ``target``'s (which makes every
        other copy of this write abort)."""
        out: list[Command] = []
        if target:
            out.append(Command("HSET", self.applied_key,
                               *(x for tp, offset in target.items()
                                 for x in (partition_field(tp), offset))))
        tps = sorted(set(partitions) | set(target))
        out += [Command("INCR", self.counter(tp)) for tp in tps]
        if not tps:
            out.append(Command("HINCRBY", self.applied_key, WRITES_FIELD, 1))
        return out

    async def refused(self, partitions: Iterable[Partition]) -> Exception:
        """The error for a transaction refused by its ``WATCH``: retryable while this worker
        holds ``partitions`` (another copy of the write ran, or another worker's claim
        changed the claims hash), else :class:`FencedError`."""
        if await self.owners.holds(partitions):
            return RedisUnavailable("the watched keys changed or the connection was lost "
                                        "during a fenced write; trying again")
        return FencedError("a partition was claimed by another worker during a fenced write")
