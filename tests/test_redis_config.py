"""The redis_cluster setting: a clear error for URLs a Redis Cluster cannot serve, and the
client each setting gives."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import RedisCluster

from churnwatch.config import load_settings
from churnwatch.errors import ConfigError
from churnwatch.redis_connect import connect
from churnwatch.script_router import ScriptRouter


@pytest.mark.parametrize(("url", "message"), [
    ("redis://127.0.0.1:7000/3", "only database 0"),
    ("unix:///run/redis.sock", "reached over TCP"),
])
def test_cluster_rejects_what_it_cannot_serve(url: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_settings(redis_url=url, redis_cluster=True)
    assert "redis-cluster" in str(err.value) and message in str(err.value)


def test_cluster_setting_chooses_the_client() -> None:
    cluster = connect(load_settings(redis_url="redis://127.0.0.1:7000/0", redis_cluster=True))
    single = connect(load_settings(redis_url="redis://127.0.0.1:7000/2"))
    assert isinstance(cluster, RedisCluster) and ScriptRouter(cluster).cluster
    assert not isinstance(single, RedisCluster) and not ScriptRouter(single).cluster


def test_single_redis_is_one_group() -> None:
    router = ScriptRouter(connect(load_settings(redis_url="redis://127.0.0.1:7000/0")))
    assert asyncio.run(router.split(["a", "b", "c"])) == [(None, [0, 1, 2])]
    assert asyncio.run(router.split([])) == []
