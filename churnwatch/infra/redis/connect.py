"""Redis clients from the settings: a single Redis, or a Redis Cluster with
``redis_cluster = true`` (``redis_url`` then names any node; the client finds the others)."""

from __future__ import annotations

from functools import cache
from typing import Any

import hiredis
import redis as syncredis
import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline as AsyncPipeline
from redis.asyncio.cluster import ClusterPipeline as AsyncClusterPipeline
from redis.asyncio.cluster import RedisCluster
from redis.cluster import RedisCluster as SyncRedisCluster

from churnwatch.core.errors import RedisCommandError
from churnwatch.infra.config import Settings
from churnwatch.infra.redis.errors import map_redis_errors
from churnwatch.infra.redis.resp import Packed


def _timeouts(settings: Settings) -> dict[str, float]:
    """A silent (blackholed) connection fails after ``redis_timeout_s`` and is retried."""
    return {"socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": settings.redis_timeout_s}


class Redis(aioredis.Redis):
    """A single Redis' client whose errors are churnwatch's (``churnwatch.infra.redis.errors``)."""

    async def execute_command(self, *args: Any, **options: Any) -> Any:
        with map_redis_errors():
            return await super().execute_command(*args, **options)

    def pipeline(self, transaction: bool = True, shard_hint: str | None = None) -> Pipeline:
        return Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)


class Pipeline(AsyncPipeline):
    async def execute(self, raise_on_error: bool = True) -> list[Any]:
        with map_redis_errors():
            return await super().execute(raise_on_error)

    async def immediate_execute_command(self, *args: Any, **options: Any) -> Any:
        with map_redis_errors():  # (while watching)
            return await super().immediate_execute_command(*args, **options)


class Cluster(RedisCluster):
    """A Redis Cluster client whose errors are churnwatch's."""

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        with map_redis_errors():
            return await super().execute_command(*args, **kwargs)

    def pipeline(self, transaction: Any = None, shard_hint: Any = None) -> ClusterPipeline:
        if shard_hint:
            raise RedisCommandError("shard_hint is not supported by a Redis Cluster")
        return ClusterPipeline(self, transaction)


class ClusterPipeline(AsyncClusterPipeline):
    async def execute(self, raise_on_error: bool = True,
                      allow_redirections: bool = True) -> list[Any]:
        with map_redis_errors():
            return await super().execute(raise_on_error, allow_redirections)


def connect(settings: Settings, **options: Any) -> Any:
    """A ``redis.asyncio`` client (:class:`Redis` or :class:`Cluster`) for
    ``settings.redis_url``, raising churnwatch's errors."""
    options = {**_timeouts(settings), **options}
    if settings.redis_cluster:
        return hiredis_packing(Cluster.from_url(settings.redis_url, **options))
    return hiredis_packing(Redis.from_url(settings.redis_url, **options))


@cache
def _packing_with_hiredis(connection_class: type) -> type:
    """``connection_class`` whose commands are serialised by hiredis (C)."""

    def pack_command(self: Any, *args: Any) -> list[bytes]:
        if len(args) == 2 and type(args[1]) is Packed:  # packed already (churnwatch.infra.redis.resp)
            return [args[1].chunk]
        if isinstance(args[0], str):  # "CONFIG GET": a command name of several words
            args = (*args[0].encode().split(), *args[1:])
        elif b" " in args[0]:
            args = (*args[0].split(), *args[1:])
        try:
            return [hiredis.pack_command(args)]
        except TypeError:  # hiredis takes bytes, str, int and float only
            return [hiredis.pack_command(tuple(
                bytes(a) if isinstance(a, (bytearray, memoryview)) else a for a in args))]

    return type(f"Hiredis{connection_class.__name__}", (connection_class,),
                {"pack_command": pack_command, "sends_packed": True, "__module__": __name__})


def hiredis_packing(client: Any) -> Any:
    """Make an asyncio client serialise commands with hiredis and return it.

    redis-py's asyncio connections pack every argument in Python (about 0.5 µs each) even
    when hiredis is installed; a batch's commit carries several arguments per subscriber, so
    this was a tenth of the worker's time. hiredis gives the same bytes 8× faster. The
    connections also send a :class:`~churnwatch.infra.redis.resp.Packed` command as it is."""
    if isinstance(client, RedisCluster):
        kwargs = client.nodes_manager.connection_kwargs
        kwargs["connection_class"] = _packing_with_hiredis(kwargs["connection_class"])
        for node in client.nodes_manager.startup_nodes.values():
            node.connection_class = _packing_with_hiredis(node.connection_class)
    else:
        pool = client.connection_pool
        pool.connection_class = _packing_with_hiredis(pool.connection_class)
    return client


def sends_packed(client: Any) -> bool:
    """Whether ``client`` (a single Redis' client or pipeline) sends :class:`Packed`
    commands as they are: made by :func:`hiredis_packing`."""
    pool = getattr(client, "connection_pool", None)
    return bool(getattr(getattr(pool, "connection_class", None), "sends_packed", False))


def connect_sync(settings: Settings) -> Any:
    """A blocking client (``redis.Redis`` or ``redis.cluster.RedisCluster``)."""
    if settings.redis_cluster:
        return SyncRedisCluster.from_url(settings.redis_url, **_timeouts(settings))
    return syncredis.Redis.from_url(settings.redis_url, **_timeouts(settings))
