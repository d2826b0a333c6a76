"""Redis errors translated at the boundary (churnwatch/infra/redis/errors.py): a client made
by ``connect`` raises churnwatch's errors on a real redis-server — out of memory (also inside a
Lua script), unavailable, a refused command — and passes the transaction's WatchError through."""

from __future__ import annotations

import asyncio

import pytest
from redis import exceptions as rx

from churnwatch.core.errors import (
    ChurnwatchError,
    RedisCommandError,
    RedisOutOfMemory,
    RedisRefused,
    RedisUnavailable,
    RetryableError,
)
from churnwatch.dev.embedded import EmbeddedRedis, free_port
from churnwatch.infra.config import Settings
from churnwatch.infra.redis.connect import connect
from churnwatch.infra.redis.errors import WatchError, is_retryable, translate


@pytest.mark.parametrize(("raw", "kind"), [
    (rx.OutOfMemoryError("command not allowed when used memory > 'maxmemory'."),
     RedisOutOfMemory),
    (rx.ResponseError("Error running script (call to f_x): @user_script:1: -OOM command "
                      "not allowed when used memory > 'maxmemory'."), RedisOutOfMemory),
    (rx.ConnectionError("Connection refused"), RedisUnavailable),
    (rx.TimeoutError("Timeout reading from socket"), RedisUnavailable),
    (rx.BusyLoadingError("Redis is loading the dataset in memory"), RedisUnavailable),
    (rx.ResponseError("MOVED 3999 127.0.0.1:6381"), RedisUnavailable),
    (rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value"),
     RedisCommandError),
    (rx.AuthenticationError("invalid username-password pair"), RedisRefused),
    (rx.NoPermissionError("this user has no permissions to run the 'set' command"),
     RedisRefused),
])
def test_redis_py_errors_map_to_one_churnwatch_error_each(raw: Exception, kind: type) -> None:
    mapped = translate(raw)
    assert type(mapped) is kind and isinstance(mapped, ChurnwatchError)
    assert is_retryable(raw) == issubclass(kind, RetryableError) == is_retryable(mapped)


def test_control_flow_errors_pass_through() -> None:
    for raw in (rx.WatchError("watched"), rx.NoScriptError("NOSCRIPT")):
        assert translate(raw) is raw and not is_retryable(raw)


def test_a_connected_client_raises_churnwatchs_errors() -> None:
    async def main(server: EmbeddedRedis) -> None:
        client = connect(Settings(redis_url=server.url))
        try:
            await client.set("s", "x")
            with pytest.raises(RedisCommandError, match="WRONGTYPE") as refused:
                await client.lpush("s", "y")
            assert isinstance(refused.value.__cause__, rx.ResponseError)
            pipe = client.pipeline(transaction=True)
            pipe.lpush("s", "y")
            with pytest.raises(RedisCommandError, match="WRONGTYPE"):
                await pipe.execute()
            await pipe.reset()

            await client.config_set("maxmemory-policy", "noeviction")
            await client.config_set("maxmemory", "1")
            with pytest.raises(RedisOutOfMemory):
                await client.set("t", "x" * 1000)
            script = client.register_script("return redis.call('SET', KEYS[1], ARGV[1])")
            with pytest.raises(RedisOutOfMemory):  # inside Lua, redis-py raises ResponseError
                await script(keys=["u"], args=["x" * 1000])
            pipe = client.pipeline(transaction=True)
            pipe.set("v", "x" * 1000)
            with pytest.raises(RedisOutOfMemory):
                await pipe.execute()
            await pipe.reset()
            await client.config_set("maxmemory", "0")

            watcher = client.pipeline(transaction=True)
            await watcher.watch("w")
            await client.set("w", "changed")  # another client writes the watched key
            watcher.multi()
            watcher.set("w", "mine")
            with pytest.raises(WatchError):
                await watcher.execute()
            await watcher.reset()
        finally:
            await client.aclose()

        gone = connect(Settings(redis_url=f"redis://127.0.0.1:{free_port()}/0",
                                redis_timeout_s=1.0))
        try:
            with pytest.raises(RedisUnavailable):
                await gone.ping()
        finally:
            await gone.aclose()

    with EmbeddedRedis() as server:
        asyncio.run(main(server))
