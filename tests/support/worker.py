"""A real `churnwatch worker` process for the end-to-end tests, and reading a topic back."""

from __future__ import annotations

import asyncio
import os
import secrets
import subprocess
import sys
import time
import urllib.request
import uuid
from pathlib import Path

import orjson
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client.parser import text_string_to_metric_families

from churnwatch.infra.runtime import kernel_cache

kernel_cache.configure()  # before any kernel is imported (churnwatch/infra/runtime/kernel_cache.py)

from churnwatch.dev.embedded import EmbeddedBroker, free_port
from churnwatch.infra.kafka.offsets import high_watermarks, worker_lag
from tests.support.redis_target import RedisTarget


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
