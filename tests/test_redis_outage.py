"""A Redis outage pauses the worker: events wait unacknowledged, and once redis-server is back
(restarted from its append-only file) they are processed and alert as if nothing happened."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from churnwatch.dev.embedded import EmbeddedRedis
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.offsets import group_lag
from churnwatch.infra.kafka.topics import create_topics
from tests.support.stream_feed import Feed
from tests.support.worker import Worker

pytestmark = pytest.mark.integration


def test_events_wait_for_redis_and_nothing_is_lost(broker, tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: 2 for t in (EVENTS_TOPIC, ALERTS_TOPIC,
                                                               SCORES_TOPIC, DLQ_TOPIC)}))
    with EmbeddedRedis(appendfsync="always") as redis_server:
        worker = Worker(broker, redis_server.url, tmp_path)
        try:
            worker.start()
            warmup = Feed()
            warmup.add("+447700900051", "login", 1_778_000_000_000)
            assert worker.cli("replay", str(warmup.write(tmp_path / "w.ndjson"))).returncode == 0
            worker.wait_caught_up()

            redis_server.kill()
            feed = Feed()
            feed.logins("+447700900052", 20, 1)
            feed.complaints("+447700900052", 2)
            assert worker.cli("replay", str(feed.write(tmp_path / "e.ndjson"))).returncode == 0
            time.sleep(6)  # several retry rounds while Redis is down
            waiting = asyncio.run(group_lag(broker.bootstrap, worker.app_id, EVENTS_TOPIC))
            assert waiting > 0
            worker.wait_for(lambda: _lag_gauge(worker) == waiting, timeout=20,
                            what="the lag gauge to show the waiting records")
            assert worker.alerts() == []
            assert worker.proc is not None and worker.proc.poll() is None

            redis_server.restart()
            worker.wait_caught_up()
            worker.wait_for(lambda: len(worker.alerts()) == 1, timeout=30, what="the alert")
            errors = worker.metric("churnwatch_redis_errors_total")  # any operation
            assert errors is not None and errors >= 1
            worker.wait_for(lambda: _lag_gauge(worker) == 0, timeout=20, what="lag 0")
            report = worker.cli("inspect", "+447700900052", "--json")
            assert b'"logins_prev28": 20.0' in report.stdout
        finally:
            worker.stop()


def _lag_gauge(worker: Worker) -> float | None:
    """The worker's churnwatch_consumer_lag_records of churn.events, both partitions."""
    values = [worker.metric("churnwatch_consumer_lag_records", topic=EVENTS_TOPIC,
                            partition=str(p)) for p in (0, 1)]
    return None if None in values else sum(values)
