"""Shared fixtures: a real redis-server and a real Kafka-protocol broker (Tansu) on loopback,
started and stopped by the tests themselves, and a helper to run `churnwatch worker`."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import redis
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from churnwatch import kernel_cache

kernel_cache.configure()  # before any kernel is imported (churnwatch/kernel_cache.py)

from churnwatch.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC  # noqa: E402
from churnwatch.embedded import EmbeddedBroker, EmbeddedRedis, create_topics, free_port
from churnwatch.embedded_cluster import EmbeddedRedisCluster
from churnwatch.offsets import high_watermarks, worker_lag

DAY = 86_400_000
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


@pytest.fixture(params=["single", "cluster"])
def redis_target(request: pytest.FixtureRequest) -> RedisTarget:
    """A clean single Redis, then a clean 3-master Redis Cluster (the test runs on each)."""
    if request.param == "single":
        return RedisTarget(request.getfixturevalue("redis_url"))
    cluster: EmbeddedRedisCluster = request.getfixturevalue("redis_cluster_server")
    cluster.flushall()
    return RedisTarget(cluster.url, cluster=True)


@dataclass(frozen=True)
class SimulatedFeed:
    """A simulated feed (duplicates and out-of-order events on) and its offline oracle: the
    alert ids the rules must raise (``churnwatch rules test``) and every subscriber's final
    features (``features.reference``)."""

    lines: list[bytes]
    expected_ids: frozenset[str]
    features: dict[str, Any]

    def write(self, path: Path, start: int = 0, stop: int | None = None) -> Path:
        path.write_bytes(b"\n".join(self.lines[start:stop]) + b"\n")
        return path


def make_feed(subscribers: int, days: int, churn_rate: float, seed: int,
              faults: float = 0.02) -> SimulatedFeed:
    """Simulate a feed (``faults``: the duplicate and the out-of-order rates) and run its
    oracle."""
    from alerting.alert import alert_id
    from churnwatch.events import decode_payload
    from churnwatch.simulate import SimConfig, Simulation
    from features.reference import ReferenceStore
    from rules.dryrun import dry_run
    from rules.engine import compile_ruleset
    from rules.ruleset import load_ruleset

    sim = Simulation(SimConfig(subscribers=subscribers, days=days, churn_rate=churn_rate,
                               seed=seed, duplicate_rate=faults, out_of_order_rate=faults))
    lines = [orjson.dumps(e) for e in sim.events()]
    expected = dry_run(compile_ruleset(load_ruleset()), lines)["alerts"]
    reference = ReferenceStore()
    for raw in lines:
        for ev in decode_payload(raw)[0]:
            reference.apply(ev)
    return SimulatedFeed(lines, frozenset(alert_id(a["subscriber_id"], a["event_id"], a["rules"])
                                          for a in expected),
                         {sid: reference.features(sid) for sid in reference.subscribers})


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


class Worker:
    """A `churnwatch worker` subprocess with its own consumer group and fresh topics' view."""

    def __init__(self, broker: EmbeddedBroker, redis_url: str | RedisTarget, tmp: Path,
                 partitions: int = 2, **env: str) -> None:
        target = redis_url if isinstance(redis_url, RedisTarget) else RedisTarget(redis_url)
        self.broker = broker
        self.redis = target
        self.redis_url = target.url
        self.partitions = partitions
        self.alerts_path = tmp / "alerts.jsonl"
        self.scores_path = tmp / "scores.jsonl"
        self.log_path = tmp / "worker.log"
        self.app_id = f"test-{uuid.uuid4().hex[:8]}"
        self.metrics_port = free_port()
        self.web_port = free_port()
        self.web_token = secrets.token_urlsafe(24)
        self.env = dict(os.environ, CHURNWATCH_BROKER=broker.url, **target.env,
                        CHURNWATCH_ALERTS_JSONL=str(self.alerts_path),
                        CHURNWATCH_SCORES_JSONL=str(self.scores_path),
                        CHURNWATCH_APP_ID=self.app_id,
                        CHURNWATCH_METRICS_PORT=str(self.metrics_port),
                        CHURNWATCH_WEB_PORT=str(self.web_port),
                        CHURNWATCH_WEB_TOKEN=self.web_token,
                        CHURNWATCH_PARTITIONS=str(partitions), CHURNWATCH_SESSION_TIMEOUT_S="2")
        self.env.update(env)
        self.proc: subprocess.Popen | None = None

    def cli(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "churnwatch", *args], env=self.env,
                              input=stdin, capture_output=True, timeout=120)

    def start(self) -> Worker:
        self.proc = subprocess.Popen([sys.executable, "-m", "churnwatch", "worker"], env=self.env,
                                     stdout=self.log_path.open("ab"), stderr=subprocess.STDOUT)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def alerts(self) -> list[dict]:
        if not self.alerts_path.exists():
            return []
        return [orjson.loads(line) for line in self.alerts_path.read_bytes().splitlines()]

    def scores(self) -> list[dict]:
        if not self.scores_path.exists():
            return []
        return [orjson.loads(line) for line in self.scores_path.read_bytes().splitlines()]

    def metric(self, name: str, **labels: str) -> float | None:
        """A sample of the worker's /metrics, or None if absent or not served yet."""
        try:
            text = urllib.request.urlopen(f"http://127.0.0.1:{self.metrics_port}/metrics",
                                          timeout=5).read().decode()
        except OSError:
            return None
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v
                                               for k, v in labels.items()):
                    return sample.value
        return None

    def wait_for(self, predicate, timeout: float = 60.0, what: str = "condition") -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            if predicate():
                return
            time.sleep(0.25)
        raise AssertionError(f"timed out waiting for {what}:\n{self.log_path.read_text()[-3000:]}")

    def wait_caught_up(self, timeout: float = 90.0) -> None:
        """Until the worker's group has committed every offset of churn.events and of
        the events it forwarded to their home partitions."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise AssertionError(f"worker exited:\n{self.log_path.read_text()[-3000:]}")
            if asyncio.run(worker_lag(self.broker.bootstrap, self.app_id)) == 0:
                return
            time.sleep(0.5)
        raise AssertionError(f"worker did not catch up:\n{self.log_path.read_text()[-3000:]}")


async def read_topic(bootstrap: str, topic: str) -> list[bytes]:
    """Every message currently in ``topic`` (all partitions, from the beginning)."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        await consumer.topics()  # loads metadata
        parts = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        if not parts:
            return []
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        ends = await high_watermarks(consumer, topic)
        await consumer.seek_to_beginning(*parts)
        out: list[bytes] = []
        while [tp for tp in parts if await consumer.position(tp) < ends[tp]]:
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                out += [r.value for r in records]
        return out
    finally:
        await consumer.stop()


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
