"""Redis clients from the settings: a single Redis, or a Redis Cluster with
``redis_cluster = true`` (``redis_url`` then names any node; the client finds the others)."""

from __future__ import annotations

from typing import Any

import redis as syncredis
import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.cluster import RedisCluster as SyncRedisCluster

from churnwatch.config import Settings


def _timeouts(settings: Settings) -> dict[str, float]:
    """A silent (blackholed) connection fails after ``redis_timeout_s`` and is retried."""
    return {"socket_timeout": settings.redis_timeout_s,
            "socket_connect_timeout": settings.redis_timeout_s}


def connect(settings: Settings, **options: Any) -> Any:
    """A ``redis.asyncio`` client (``Redis`` or ``RedisCluster``) for ``settings.redis_url``."""
    options = {**_timeouts(settings), **options}
    if settings.redis_cluster:
        return RedisCluster.from_url(settings.redis_url, **options)
    return aioredis.Redis.from_url(settings.redis_url, **options)


def connect_sync(settings: Settings) -> Any:
    """A blocking client (``redis.Redis`` or ``redis.cluster.RedisCluster``)."""
    if settings.redis_cluster:
        return SyncRedisCluster.from_url(settings.redis_url, **_timeouts(settings))
    return syncredis.Redis.from_url(settings.redis_url, **_timeouts(settings))
