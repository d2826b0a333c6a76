"""Feeds as operators produce them, through a real worker: confluent-kafka (librdkafka), one
JSON event per Kafka message, keyed by the producer's own subscriber id, with librdkafka's
CRC32 partitioner, every codec Kafka clients use (none, gzip, snappy, lz4, zstd) on one
topic. The worker must give exactly the oracle's alerts, features and dead letters."""

from __future__ import annotations

import asyncio
import zlib
from collections import Counter
from pathlib import Path

import orjson
import pytest

from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.topics import create_topics
from tests.support.fleet import feed
from tests.support.history import check_history, oracle
from tests.support.producers import COMPRESSIONS, produce_events, subscriber_key
from tests.support.worker import Worker, read_topic

pytestmark = pytest.mark.integration
PARTITIONS = 4


def test_one_event_per_message_in_every_codec_gives_the_oracles_history(
        broker, redis_url, tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    lines = feed(subscribers=60, seed=7)
    expected = oracle(lines)
    assert len(expected.alert_ids) >= 5 and expected.invalid
    # five producers, one codec each, each owning a share of the subscribers (so each
    # subscriber's events keep their order); unkeyed lines go to the first one
    shares: list[list[bytes]] = [[] for _ in COMPRESSIONS]
    for line in lines:
        key = subscriber_key(line)
        shares[0 if key is None else zlib.crc32(key) % len(COMPRESSIONS)].append(line)
    worker = Worker(broker, redis_url, tmp_path, partitions=PARTITIONS,
                    CHURNWATCH_SILENCE_INTERVAL_S="3600", CHURNWATCH_WORK_QUEUES="true")
    try:
        worker.start()
        for codec, share in zip(COMPRESSIONS, shares):
            placed = produce_events(broker.bootstrap, EVENTS_TOPIC, share, compression=codec)
            assert len(placed) == len(share)
        worker.wait_caught_up(timeout=180)
        assert worker.metric("churnwatch_batch_events_count") >= 1
    finally:
        worker.stop()
    history = check_history(broker.bootstrap, redis_url, worker.app_id, expected)
    assert history.lost == 0 and history.duplicated_actions == 0
    assert history.extra["late_after_replay"] == 0
    counts = Counter(orjson.loads(m)["kind"]
                     for m in asyncio.run(read_topic(broker.bootstrap, DLQ_TOPIC)))
    assert counts["invalid"] == sum(expected.invalid.values())
