"""``streams.commit.BatchCommit`` on a real redis-server: its states, the applied offsets
stored with the writes (fenced) or after them (unfenced), a re-send after a lost reply, a
former owner refused, and writes described again for each attempt."""

from __future__ import annotations

import asyncio

import pytest
import redis.asyncio as aioredis
from redis.asyncio.connection import Connection

from churnwatch.core.errors import FencedError
from churnwatch.infra.redis.script_router import ScriptRouter
from churnwatch.infra.redis.writes import Command, ScriptCalls, Write
from streams.commit import AppliedOffsets, BatchCommit, CommitState
from streams.ownership import PartitionOwners, WriteFence

OWNERS, APPLIED = "bc:owners", "bc:applied"
TP = ("churn.events", 0)


def _run(redis_url: str, scenario) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        client = aioredis.Redis.from_url(redis_url)
        try:
            await client.flushdb()
            await scenario(client)
        finally:
            await client.aclose()
    asyncio.run(main())


async def _fence(client: aioredis.Redis, member: str) -> WriteFence:
    owners = PartitionOwners(client, OWNERS, member)
    await owners.claim([TP])
    return WriteFence(owners, APPLIED)


def _describe(*writes: Write):  # type: ignore[no-untyped-def]
    calls = []

    async def describe() -> list[Write]:
        calls.append(1)
        return list(writes)
    return describe, calls


def test_a_fenced_commit_lands_its_writes_and_offsets_in_one_transaction(redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        fence = await _fence(client, "w1")
        describe, _ = _describe(Command("SET", "bc:a", "1"), Command("RPUSH", "bc:b", "x"))
        offsets = AppliedOffsets(APPLIED, {TP: 42}, {"home:0<1": 7})
        commit = BatchCommit(client, describe, cluster=False, fence=fence, partitions=[TP],
                             offsets=offsets)
        assert commit.state is CommitState.STAGED
        await commit.send()
        assert commit.state is CommitState.LANDED and commit.landed_by == "this"
        assert await client.get("bc:a") == b"1"
        stored = await client.hgetall(APPLIED)
        assert stored[b"churn.events:0"] == b"42" and stored[b"home:0<1"] == b"7"
        assert await client.get(fence.counter(TP)) == b"1"  # the partition's write counter
        await commit.send()  # landed: nothing is sent again
        assert await client.lrange("bc:b", 0, -1) == [b"x"]

    _run(redis_url, scenario)


def test_a_resend_whose_first_copy_landed_writes_nothing_again(redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        fence = await _fence(client, "w1")
        offsets = AppliedOffsets(APPLIED, {TP: 10})
        first = BatchCommit(client, _describe(Command("RPUSH", "bc:b", "x"))[0], cluster=False,
                            fence=fence, partitions=[TP], offsets=offsets)
        await first.send()
        # the same write again, as a retry after its reply was lost
        describe, calls = _describe(Command("RPUSH", "bc:b", "x"))
        again = BatchCommit(client, describe, cluster=False, fence=fence, partitions=[TP],
                            offsets=offsets)
        await again.send()
        assert again.state is CommitState.LANDED and again.landed_by == "a copy"
        assert calls == [1]  # described (its scripts are checked with the watch), not sent
        assert await client.lrange("bc:b", 0, -1) == [b"x"]
        assert await client.get(fence.counter(TP)) == b"1"

    _run(redis_url, scenario)


def test_a_former_owner_is_refused_and_its_commit_fails(redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        old = await _fence(client, "w1")
        await _fence(client, "w2")  # the partition moved to w2
        commit = BatchCommit(client, _describe(Command("SET", "bc:a", "stale"))[0],
                             cluster=False, fence=old, partitions=[TP],
                             offsets=AppliedOffsets(APPLIED, {TP: 5}))
        with pytest.raises(FencedError):
            await commit.send()
        assert commit.state is CommitState.FAILED
        assert await client.get("bc:a") is None and await client.hget(APPLIED, "churn.events:0") is None

    _run(redis_url, scenario)


def test_unfenced_offsets_are_stored_after_the_writes_and_each_attempt_describes_again(
        redis_url: str) -> None:
    async def scenario(client: aioredis.Redis) -> None:
        attempts = []

        async def describe() -> list[Write]:
            attempts.append(1)
            if len(attempts) == 1:
                raise ConnectionError("lost")  # e.g. a cluster's slots moved while describing
            return [Command("SET", "bc:a", str(len(attempts)))]

        commit = BatchCommit(client, describe, cluster=False,
                             offsets=AppliedOffsets(APPLIED, {TP: 3}))
        with pytest.raises(ConnectionError):
            await commit.send()
        assert commit.state is CommitState.FAILED
        assert await client.hget(APPLIED, "churn.events:0") is None  # nothing landed
        await commit.send()
        assert commit.state is CommitState.LANDED
        assert await client.get("bc:a") == b"2"
        assert await client.hget(APPLIED, "churn.events:0") == b"3"
        assert await client.hget(APPLIED, "writes") is None  # not fenced: no write counter

    _run(redis_url, scenario)


def test_a_fenced_commit_is_two_round_trips(redis_url: str,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """The watch with its reads and the script check in one packet, the transaction in a
    second: each round trip waits for a turn of the worker's busy event loop."""
    async def scenario(client: aioredis.Redis) -> None:
        fence = await _fence(client, "w1")
        script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
        await script(keys=["bc:s"], args=["loaded"])
        router = ScriptRouter(client)
        packets: list[int] = []
        send = Connection.send_packed_command

        async def counted(self: Connection, command: object, check_health: bool = True) -> None:
            packets.append(1)
            await send(self, command, check_health)

        monkeypatch.setattr(Connection, "send_packed_command", counted)
        commit = BatchCommit(client, _describe(
            Command("SET", "bc:a", "1"),
            ScriptCalls(router, script, ((None, ["bc:s"], ["by the commit"]),)))[0],
            cluster=False, fence=fence, partitions=[TP], offsets=AppliedOffsets(APPLIED, {TP: 5}))
        await commit.send()
        assert len(packets) == 2
        monkeypatch.undo()
        assert await client.get("bc:a") == b"1" and await client.get("bc:s") == b"by the commit"
        assert await client.hget(APPLIED, "churn.events:0") == b"5"

    _run(redis_url, scenario)
