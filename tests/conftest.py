"""Shared fixtures: a real redis-server and a real Kafka-protocol broker (Tansu) on loopback,
started and stopped by the tests themselves, and a helper to run `churnwatch worker`."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from churnwatch.infra.runtime import kernel_cache

kernel_cache.configure()  # before any kernel is imported (churnwatch/infra/runtime/kernel_cache.py)

from churnwatch.dev.embedded import EmbeddedBroker, EmbeddedRedis
from churnwatch.dev.embedded_cluster import EmbeddedRedisCluster
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC  # noqa: E402
from churnwatch.infra.kafka.topics import create_topics
from tests.support.feeds import SimulatedFeed, make_feed
from tests.support.redis_target import RedisTarget
from tests.support.worker import Worker

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EmbeddedRedis]:
    with EmbeddedRedis() as server:
        yield server


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """A clean database on the session's redis-server."""
    redis.Redis.from_url(redis_server.url).flushall()
    return redis_server.url


@pytest.fixture(scope="session")
def redis_cluster_server() -> Iterator[EmbeddedRedisCluster]:
    """A real 3-master Redis Cluster on loopback for the whole session (started on first use)."""
    with EmbeddedRedisCluster(masters=3) as cluster:
        yield cluster




@pytest.fixture(params=["single", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """A clean single Redis, then a clean 3-master Redis Cluster (the test runs on each)."""
    if request.param == "single":
        return RedisTarget(request.getfixturevalue("redis_url"))
    cluster: EmbeddedRedisCluster = request.getfixturevalue("redis_cluster_server")
    cluster.flushall()
    return RedisTarget(cluster.url, cluster=True)






@pytest.fixture(scope="session")
def simulated_feed() -> SimulatedFeed:
    """40 subscribers x 90 days (~7,500 events, 8 alerts), shared by the cluster and fleet
    tests so the oracle is computed once."""
    return make_feed(40, 90, 0.3, seed=23)


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    """A fresh memory-only broker per test (starts in ~0.1 s), so tests never share topics."""
    with EmbeddedBroker() as server:
        yield server






def _new_worker(broker: EmbeddedBroker, redis: str | RedisTarget, tmp: Path) -> Iterator[Worker]:
    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    w = Worker(broker, redis, tmp)
    yield w
    w.stop()


@pytest.fixture
def worker(broker: EmbeddedBroker, redis_url: str, tmp_path: Path) -> Iterator[Worker]:
    """A worker (not yet started) on a fresh broker with the churn.* topics created."""
    yield from _new_worker(broker, redis_url, tmp_path)


@pytest.fixture
def any_worker(broker: EmbeddedBroker, redis_target: RedisTarget,
               tmp_path: Path) -> Iterator[Worker]:
    """``worker`` on a single Redis, then on the 3-master Redis Cluster."""
    yield from _new_worker(broker, redis_target, tmp_path)
