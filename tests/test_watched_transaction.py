"""A watched transaction in two round trips (churnwatch/infra/redis/transaction.py), on a real
redis-server through a client made by ``connect``: it runs, or refuses when a watched key
changed; it loads a script Redis lacks; an error is raised after every reply is read, and the
connection goes back to the pool in step (or is closed when it may not be)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis.asyncio as aioredis

from churnwatch.core.errors import RedisCommandError, RedisUnavailable
from churnwatch.infra.config import Settings
from churnwatch.infra.redis.connect import connect
from churnwatch.infra.redis.errors import WatchError
from churnwatch.infra.redis.transaction import WatchedTransaction

SCRIPT = "return redis.call('INCRBY', KEYS[1], ARGV[1])"


def _run(redis_url: str, scenario: Callable[[Any, aioredis.Redis], Awaitable[None]]) -> None:
    async def main() -> None:
        client = connect(Settings(redis_url=redis_url))
        other = aioredis.Redis.from_url(redis_url)
        try:
            await scenario(client, other)
        finally:
            await client.aclose()
            await other.aclose()
    asyncio.run(main())


async def _in_step(client: Any) -> None:
    """Every connection of the pool answers its own next command."""
    pool = client.connection_pool
    for _ in range(len(pool._available_connections) + 1):
        assert await client.echo("in step") == b"in step"


def test_it_reads_after_the_watch_and_writes_in_one_transaction(redis_url: str) -> None:
    async def scenario(client: Any, _: aioredis.Redis) -> None:
        await client.hset("h", mapping={"a": "1", "b": "2"})
        async with WatchedTransaction(client) as tx:
            replies = await tx.watch(["h"], [("HMGET", "h", "a", "b", "c"), ("GET", "k")])
            assert replies == [[b"1", b"2", None], None]
            assert await tx.execute([("SET", "k", "v"), ("HINCRBY", "h", "a", 5)]) == [b"OK", 6]
        assert await client.get("k") == b"v"
        await _in_step(client)

    _run(redis_url, scenario)


def test_a_watched_key_changed_after_the_watch_refuses_the_whole_transaction(
        redis_url: str) -> None:
    async def scenario(client: Any, other: aioredis.Redis) -> None:
        async with WatchedTransaction(client) as tx:
            await tx.watch(["counter"], [("GET", "counter")])
            await other.incr("counter")  # another client, between the reads and the EXEC
            with pytest.raises(WatchError):
                await tx.execute([("SET", "k", "mine"), ("INCR", "counter")])
        assert await client.get("k") is None and await client.get("counter") == b"1"
        await _in_step(client)

    _run(redis_url, scenario)


def test_leaving_without_executing_unwatches(redis_url: str) -> None:
    async def scenario(client: Any, other: aioredis.Redis) -> None:
        async with WatchedTransaction(client) as tx:
            await tx.watch(["counter"], [])
        await other.incr("counter")
        # the same pooled connection runs a plain transaction: not refused by the old watch
        pipe = client.pipeline(transaction=True)
        pipe.set("k", "after")
        assert await pipe.execute() == [True]
        assert len(client.connection_pool._available_connections) == 1

    _run(redis_url, scenario)


def test_a_script_redis_lacks_is_loaded_before_the_transaction(redis_url: str) -> None:
    async def scenario(client: Any, _: aioredis.Redis) -> None:
        script = client.register_script(SCRIPT)
        await client.script_flush()
        async with WatchedTransaction(client) as tx:
            await tx.watch(["n"], [], [script])
            assert await tx.execute([("EVALSHA", script.sha, 1, "n", 4)]) == [4]
        async with WatchedTransaction(client) as tx:  # loaded now: checked, not loaded again
            await tx.watch(["n"], [], [script])
            assert await tx.execute([("EVALSHA", script.sha, 1, "n", 3)]) == [7]

    _run(redis_url, scenario)


def test_a_command_refused_when_queued_runs_nothing(redis_url: str) -> None:
    async def scenario(client: Any, _: aioredis.Redis) -> None:
        async with WatchedTransaction(client) as tx:
            await tx.watch(["k"], [])
            with pytest.raises(RedisCommandError, match="wrong number of arguments"):
                await tx.execute([("SET", "k", "v"), ("GET",)])
        assert await client.get("k") is None
        await _in_step(client)

    _run(redis_url, scenario)


def test_a_command_failing_in_the_transaction_is_raised_after_every_reply(
        redis_url: str) -> None:
    async def scenario(client: Any, _: aioredis.Redis) -> None:
        await client.set("s", "text")
        async with WatchedTransaction(client) as tx:
            await tx.watch(["s"], [])
            with pytest.raises(RedisCommandError, match="WRONGTYPE"):
                await tx.execute([("LPUSH", "s", "x"), ("SET", "k", "ran")])
        assert await client.get("k") == b"ran"  # Redis does not roll a transaction back
        await _in_step(client)

    _run(redis_url, scenario)


def test_a_connection_lost_mid_exchange_is_unavailable_and_not_reused(redis_url: str) -> None:
    async def scenario(client: Any, other: aioredis.Redis) -> None:
        with pytest.raises(RedisUnavailable):
            async with WatchedTransaction(client) as tx:
                await tx.watch(["k"], [])
                await other.client_kill_filter(_type="normal", skipme=True)
                await tx.execute([("SET", "k", "v")])
        assert await client.get("k") is None
        await _in_step(client)  # a fresh connection replaces the lost one

    _run(redis_url, scenario)
