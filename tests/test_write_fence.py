"""The write fence (``streams.ownership.WriteFence``) on a real redis-server: of the copies of
one write, one runs; a copy held back on the network (a proxy, a stalled link) that reaches
Redis after its retry, or after later writes, is refused; a retry whose first copy landed
knows it; a former owner is refused."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis

from churnwatch.core.errors import FencedError
from churnwatch.infra.redis.transaction import WatchedTransaction
from streams.ownership import PartitionOwners, WatchError, WriteFence

OWNERS, APPLIED, STATE = "t:owners", "t:applied", "t:state"
TP = ("churn.events", 0)
OTHER = ("churn.events", 1)


async def _fence(client: aioredis.Redis, member: str = "w1") -> WriteFence:
    owners = PartitionOwners(client, OWNERS, member)
    await owners.claim([TP])
    return WriteFence(owners, APPLIED)


class _Held:
    """A fenced write watched and checked on its own connection, not yet executed."""

    def __init__(self, tx: WatchedTransaction, commands: list[tuple[object, ...]]) -> None:
        self.tx = tx
        self.commands = commands

    async def execute(self) -> str:
        try:
            await self.tx.execute(self.commands)
        except WatchError:
            return "refused"
        finally:
            await self.tx.__aexit__(None, None, None)
        return "ran"


async def _prepare(fence: WriteFence, client: aioredis.Redis, value: str,
                   target: dict[tuple[str, int], int],
                   partitions: tuple[tuple[str, int], ...] = (TP,),
                   key: str = STATE) -> tuple[_Held, bool]:
    """A write of ``value`` to ``key``, watched and checked, not yet executed."""
    tx = await WatchedTransaction(client).__aenter__()
    try:
        ok = await fence.open(tx, partitions, target)
    except BaseException as exc:
        await tx.__aexit__(type(exc), exc, None)
        raise
    commands = [("SET", key, value), *(c.args for c in fence.close(partitions, target))]
    return _Held(tx, commands), ok


async def _execute(held: _Held) -> str:
    return await held.execute()


def _run(redis_url: str, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        clients = [aioredis.Redis.from_url(redis_url) for _ in range(3)]
        try:
            await clients[0].flushdb()
            await scenario(*clients)
        finally:
            for c in clients:
                await c.aclose()
    asyncio.run(main())


def test_a_held_back_copy_of_a_write_never_runs_after_its_retry_and_later_writes(
        redis_url: str) -> None:
    async def scenario(a: aioredis.Redis, b: aioredis.Redis, _: aioredis.Redis) -> None:
        fence_a = await _fence(a)
        fence_b = WriteFence(fence_a.owners, APPLIED)  # the same worker, another connection
        held, _ok = await _prepare(fence_a, a, "batch-1", {TP: 10})  # its reply "lost"
        retry, ok = await _prepare(fence_b, b, "batch-1", {TP: 10})
        assert ok and await _execute(retry) == "ran"
        later, ok = await _prepare(fence_b, b, "batch-2", {TP: 20})
        assert ok and await _execute(later) == "ran"
        assert await _execute(held) == "refused"  # the stale copy arrives last
        assert await b.get(STATE) == b"batch-2"
        assert await b.hget(APPLIED, "churn.events:0") == b"20"

    _run(redis_url, scenario)


def test_a_retry_whose_first_copy_landed_does_nothing(redis_url: str) -> None:
    async def scenario(a: aioredis.Redis, b: aioredis.Redis, _: aioredis.Redis) -> None:
        fence = await _fence(a)
        first, _ok = await _prepare(fence, a, "batch-1", {TP: 10})
        assert await _execute(first) == "ran"  # ...and its reply was lost
        retry, needed = await _prepare(fence, b, "batch-1", {TP: 10})
        await retry.tx.__aexit__(None, None, None)
        assert not needed
        assert await b.get(fence.counter(TP)) == b"1"

    _run(redis_url, scenario)


def test_writes_without_offsets_are_ordered_too(redis_url: str) -> None:
    """A sweep's write stores no offsets, but a held-back copy of it is refused once any
    other fenced write ran."""
    async def scenario(a: aioredis.Redis, b: aioredis.Redis, _: aioredis.Redis) -> None:
        fence = await _fence(a)
        held, _ok = await _prepare(fence, a, "sweep", {})
        batch, _ok = await _prepare(fence, b, "batch-1", {TP: 10})
        assert await _execute(batch) == "ran"
        assert await _execute(held) == "refused"
        assert await b.get(STATE) == b"batch-1"

    _run(redis_url, scenario)


def test_a_former_owner_is_refused_before_and_during_its_write(redis_url: str) -> None:
    async def scenario(a: aioredis.Redis, b: aioredis.Redis, c: aioredis.Redis) -> None:
        old = await _fence(a, "old")
        during, _ok = await _prepare(old, a, "old", {TP: 10})
        new = await _fence(c, "new")  # the partition moved: the claim is replaced
        assert await _execute(during) == "refused"
        assert isinstance(await old.refused([TP]), FencedError)
        with pytest.raises(FencedError, match="claimed by another worker"):
            await _prepare(old, b, "old", {TP: 10})
        pipe, ok = await _prepare(new, c, "new", {TP: 10})
        assert ok and await _execute(pipe) == "ran"
        assert await c.get(STATE) == b"new"

    _run(redis_url, scenario)


def test_a_write_behind_the_stored_offsets_is_refused(redis_url: str) -> None:
    async def scenario(a: aioredis.Redis, *_: aioredis.Redis) -> None:
        fence = await _fence(a)
        pipe, _ok = await _prepare(fence, a, "batch-2", {TP: 20})
        assert await _execute(pipe) == "ran"
        with pytest.raises(FencedError, match="past this batch"):
            await _prepare(fence, a, "batch-1", {TP: 10})

    _run(redis_url, scenario)


def test_workers_of_a_group_writing_other_partitions_do_not_abort_each_other(
        redis_url: str) -> None:
    """Every worker's commits store their offsets in the group's one hash, but a commit
    watches only its own partitions' write counters: another worker's commit, to another
    partition, landing meanwhile does not refuse it (a refusal is retried after a pause and
    counted as a Redis error: in a fleet, every worker would keep aborting the others)."""
    async def scenario(a: aioredis.Redis, b: aioredis.Redis, _: aioredis.Redis) -> None:
        fence_a = await _fence(a, "w1")
        owners_b = PartitionOwners(b, OWNERS, "w2")
        await owners_b.claim([OTHER])
        fence_b = WriteFence(owners_b, APPLIED)
        mine, ok = await _prepare(fence_a, a, "w1-batch", {TP: 10})
        assert ok
        theirs, ok = await _prepare(fence_b, b, "w2-batch", {OTHER: 7}, (OTHER,),
                                    "t:other-state")
        assert ok and await _execute(theirs) == "ran"
        assert await _execute(mine) == "ran"
        assert await a.hmget(APPLIED, ["churn.events:0", "churn.events:1"]) == [b"10", b"7"]
        assert await a.get(STATE) == b"w1-batch"

    _run(redis_url, scenario)


def test_a_write_to_no_partition_is_ordered_by_the_groups_counter(redis_url: str) -> None:
    async def scenario(a: aioredis.Redis, b: aioredis.Redis, _: aioredis.Redis) -> None:
        fence = await _fence(a)
        held, ok = await _prepare(fence, a, "held", {}, ())
        assert ok
        again, ok = await _prepare(fence, b, "retry", {}, ())
        assert ok and await _execute(again) == "ran"
        assert await _execute(held) == "refused"
        assert await b.hget(APPLIED, "writes") == b"1"

    _run(redis_url, scenario)
