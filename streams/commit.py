"""The one owner of a batch's (or a sweep's) Redis writes.

The batch's collaborators describe what to write (``churnwatch.infra.redis.writes``);
:class:`BatchCommit` sends it and tracks where it is:

    staged ──send()──▶ sent ──▶ landed
                         └────▶ failed ──send()──▶ sent …

On a single Redis the writes are one ``MULTI``/``EXEC``. When the worker owns its
partitions (a consumer group), that transaction is fenced (``streams.ownership.WriteFence``):
it runs only while this worker holds the partitions, at most once whatever the number of
copies sent, and stores the partitions' applied offsets with the states, in two round trips
(watch and check, then the transaction: ``churnwatch.infra.redis.transaction``). A Redis Cluster
cannot watch keys across slots: there the writes go out unfenced (each subscriber's effects
stay in one script per node) and the applied offsets are stored after them.

A failed send may be sent again, until it lands: the writes are described again for each
attempt (a cluster's slots may have moved), and each is idempotent or fenced.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from churnwatch.core.errors import FencedError, RedisRefused
from churnwatch.infra.redis.transaction import WatchedTransaction
from churnwatch.infra.redis.writes import (
    Command,
    Write,
    queue_writes,
    single_redis_commands,
)
from features.commits import CommitChainBroken
from streams.ownership import Partition, WatchError, WriteFence, partition_field

__all__ = ["AppliedOffsets", "BatchCommit", "CommitState"]


class CommitState(enum.Enum):
    STAGED = "staged"
    SENT = "sent"
    LANDED = "landed"
    FAILED = "failed"


@dataclass(frozen=True)
class AppliedOffsets:
    """What a batch stores in the applied-offsets hash ``key``: the offset after the last
    record applied per partition, and other positions (``fields``: the forwarded events
    applied, ``streams.repartition``)."""

    key: str
    partitions: Mapping[Partition, int] = field(default_factory=dict)
    fields: Mapping[str, int] = field(default_factory=dict)

    def writes(self, *, with_partitions: bool) -> list[Command]:
        mapping = {partition_field(tp): v for tp, v in self.partitions.items()} \
            if with_partitions else {}
        mapping.update(self.fields)
        if not mapping:
            return []
        return [Command("HSET", self.key, *(x for kv in mapping.items() for x in kv))]


class BatchCommit:
    """One batch's or sweep's writes, sent as one round trip (see the module's docstring).

    ``describe`` returns the writes, in order (called again for each attempt);
    ``partitions`` are those the writes touch (fenced when ``fence`` is given);
    ``offsets`` what to store in the applied-offsets hash; ``before_send`` runs once the
    writes are queued, before they go out (a failpoint)."""

    def __init__(self, redis: Any, describe: Callable[[], Awaitable[Sequence[Write]]], *,
                 cluster: bool, fence: WriteFence | None = None,
                 partitions: Sequence[Partition] = (), offsets: AppliedOffsets | None = None,
                 before_send: Callable[[], None] | None = None) -> None:
        self.redis = redis
        self.describe = describe
        self.cluster = cluster
        self.fence = None if cluster else fence
        self.partitions = list(partitions)
        self.offsets = offsets
        self.before_send = before_send
        self.state = CommitState.STAGED
        self.landed_by: str | None = None  # "this" once landed, "a copy" if a lost reply's

    async def send(self) -> None:
        """Send the writes; returns once they landed (or a copy of them had). Raises
        ``FencedError`` if another worker owns a partition now, a retryable Redis error
        otherwise (call again). Does nothing once landed."""
        if self.state is CommitState.LANDED:
            return
        self.state = CommitState.SENT
        try:
            ran = await self._send_once()
        except BaseException:
            self.state = CommitState.FAILED
            raise
        self.state = CommitState.LANDED
        self.landed_by = "this" if ran else "a copy"

    async def _send_once(self) -> bool:
        if self.fence is not None:
            return await self._send_fenced(self.fence)
        offsets = self.offsets
        pipe = self.redis.pipeline(transaction=not self.cluster)
        try:
            await queue_writes(pipe, await self.describe())
            if self.before_send is not None:
                self.before_send()
            await pipe.execute()
        finally:
            await pipe.reset()
        if offsets is not None:  # unfenced: after the states
            after = offsets.writes(with_partitions=True)
            if after:
                await self.redis.execute_command(*after[0].args)
        return True

    async def _send_fenced(self, fence: WriteFence) -> bool:
        """Two round trips (``WatchedTransaction``): watch and check, then the writes with
        the applied offsets in one ``MULTI``/``EXEC``."""
        target = dict(self.offsets.partitions) if self.offsets is not None else {}
        offsets = self.offsets.writes(with_partitions=False) if self.offsets is not None else []
        commands, scripts = single_redis_commands(
            [*await self.describe(), *offsets, *fence.close(self.partitions, target)])
        async with WatchedTransaction(self.redis) as tx:
            if not await fence.open(tx, self.partitions, target, scripts):
                return False  # an earlier copy landed; its reply was lost
            if self.before_send is not None:
                self.before_send()
            try:
                await tx.execute(commands)
            except WatchError:  # another copy ran, or the partitions were claimed
                raise await fence.refused(self.partitions) from None
        return True


def is_fenced(exc: BaseException) -> bool:
    """``exc`` is a fenced commit, or a batch staged on one."""
    return isinstance(exc, FencedError) or (isinstance(exc, CommitChainBroken)
                                            and isinstance(exc.__cause__, FencedError))


def refusal(exc: BaseException) -> RedisRefused | None:
    """The Redis refusal (credentials, ACL) behind ``exc``: a batch refused, or staged on one."""
    if isinstance(exc, CommitChainBroken):
        exc = exc.__cause__  # type: ignore[assignment]
    return exc if isinstance(exc, RedisRefused) else None
