"""tests/support/producers.py: one event per message, every compression and a few partitioners, each
event's (partition, offset) returned; a subscriber's events share a partition."""

from __future__ import annotations

import asyncio
import zlib

import pytest

from churnwatch.core.events import normalise_subscriber
from churnwatch.dev.embedded import EmbeddedBroker
from churnwatch.infra.kafka.topics import create_topics
from tests.support.producers import COMPRESSIONS, produce_events, subscriber_key

pytestmark = pytest.mark.integration

EVENTS = [{"event_id": f"e{i}", "subscriber_id": ("+44 7900-00000" if i % 5 == 0 else "+447900"
                                                 "00000") + str(i % 7),
           "type": "login", "ts": 1_767_225_600_000 + i, "channel": "app"} for i in range(60)]


def test_produce_events_every_codec_and_partitioner(broker: EmbeddedBroker) -> None:
    asyncio.run(create_topics(broker.bootstrap, {"t.producers": 4}))
    seen: set[tuple[int, int]] = set()
    for compression in COMPRESSIONS:
        offsets = produce_events(broker.bootstrap, "t.producers", EVENTS, compression=compression)
        assert len(offsets) == len(EVENTS) and not seen & set(offsets)
        seen |= set(offsets)
        by_subscriber: dict[str, set[int]] = {}
        for event, (partition, _) in zip(EVENTS, offsets):
            by_subscriber.setdefault(normalise_subscriber(event["subscriber_id"]),
                                     set()).add(partition)
        assert all(len(parts) == 1 for parts in by_subscriber.values())
        # consistent_random = CRC32 of the key, as librdkafka documents
        for sid, parts in by_subscriber.items():
            assert parts == {zlib.crc32(sid.encode()) % 4}
    for partitioner in ("murmur2", "fnv1a"):
        offsets = produce_events(broker.bootstrap, "t.producers", EVENTS, partitioner=partitioner)
        assert len(set(offsets)) == len(EVENTS)
    unkeyed = produce_events(broker.bootstrap, "t.producers", EVENTS, keyed=False)
    assert len(set(unkeyed)) == len(EVENTS)


def test_subscriber_key() -> None:
    assert subscriber_key({"subscriber_id": "0044 7900 000001"}) == b"+447900000001"
    assert subscriber_key(b'{"subscriber_id": "+44 7900-000001"}', "raw") == b"+44 7900-000001"
    assert subscriber_key({"type": "login"}) is None
    assert subscriber_key({"subscriber_id": "+447900000001"}, "none") is None
