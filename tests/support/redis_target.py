"""Where a test's Redis lives: a single redis-server or a Redis Cluster, with its URL."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis

from churnwatch.infra.runtime import kernel_cache

kernel_cache.configure()  # before any kernel is imported (churnwatch/infra/runtime/kernel_cache.py)



@dataclass(frozen=True)
class RedisTarget:
    """Where a test's Redis is: a single server or a cluster (``url`` names one node)."""

    url: str
    cluster: bool = False

    @property
    def env(self) -> dict[str, str]:
        """The worker/CLI environment for this target."""
        return {"CHURNWATCH_REDIS_URL": self.url,
                "CHURNWATCH_REDIS_CLUSTER": "true" if self.cluster else "false"}

    def client(self) -> Any:
        """A ``redis.asyncio`` client (Redis or RedisCluster)."""
        import redis.asyncio as aioredis
        from redis.asyncio.cluster import RedisCluster
        return (RedisCluster.from_url(self.url) if self.cluster
                else aioredis.Redis.from_url(self.url))

    def sync_client(self) -> Any:
        """A blocking client (Redis or RedisCluster)."""
        from redis.cluster import RedisCluster

        return RedisCluster.from_url(self.url) if self.cluster else redis.Redis.from_url(self.url)
