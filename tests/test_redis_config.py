"""The redis_cluster setting: a clear error for URLs a Redis Cluster cannot serve, and the
client each setting gives."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection

from churnwatch.core.errors import ConfigError
from churnwatch.infra.redis.connect import connect
from churnwatch.infra.redis.script_router import ScriptRouter
from churnwatch.infra.settings_load import load_settings


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


ARGS = [("SET", "k", b"\x00\xffbin", "EX", 30), ("CONFIG GET", "maxmemory"),
        (b"EVALSHA", "a" * 40, 2, "cw:s:{+44 7911}", "é", 1.5, 0.1 + 0.2, -7, 2 ** 70,
         bytearray(b"ba"), memoryview(b"mv"))]


@pytest.mark.parametrize("args", ARGS)
def test_hiredis_packing_gives_redis_pys_bytes(args: tuple) -> None:
    plain = Connection()
    fast = connect(load_settings(redis_url="redis://127.0.0.1:7000/0")).connection_pool \
        .connection_class()
    assert type(fast).__name__ == "HiredisConnection"
    assert b"".join(fast.pack_command(*args)) == b"".join(plain.pack_command(*args))
    assert b"".join(fast.pack_commands([args, args])) == \
        b"".join(plain.pack_commands([args, args]))


def test_hiredis_packing_on_cluster_nodes() -> None:
    cluster = connect(load_settings(redis_url="redis://127.0.0.1:7000/0", redis_cluster=True))
    assert cluster.nodes_manager.connection_kwargs["connection_class"].__name__ == \
        "HiredisConnection"
    assert all(node.connection_class.__name__ == "HiredisConnection"
               for node in cluster.nodes_manager.startup_nodes.values())


@pytest.mark.integration
def test_hiredis_packed_commands_round_trip(redis_url: str) -> None:
    async def go() -> list:
        client = connect(load_settings(redis_url=redis_url))
        script = client.register_script("return {KEYS[1], ARGV[1], ARGV[2]}")
        pipe = client.pipeline(transaction=True)
        pipe.set("hiredis:k", b"\x00\xff" * 400, ex=30)
        pipe.get("hiredis:k")
        await script(keys=["hiredis:k"], args=[1.25, "é"], client=pipe)
        out = await pipe.execute()
        await client.aclose()
        return out

    assert asyncio.run(go()) == [True, b"\x00\xff" * 400, [b"hiredis:k", b"1.25", "é".encode()]]
