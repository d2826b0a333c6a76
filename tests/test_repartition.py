"""One writer per subscriber whatever the producers do (``streams.repartition``).

Unit: which events a batch keeps and which it forwards, packed per home partition.

Fleet: two workers share four partitions; one feed is sent through three producers that place
a subscriber on different partitions: confluent-kafka with librdkafka's default partitioner
(CRC32) keyed by the id as written, confluent-kafka with murmur2 keyed by the id as written,
and ``churnwatch replay``'s packer (murmur2 of the normalised id). The ids are written in
several formats (``+44 7954 288876``, ``00447954288876``). Each slice of the feed gives each
subscriber to one producer and one format, and the next slice starts once the group caught
up, so every subscriber's events arrive in the feed's order but on several partitions,
owned by both workers. Features, alerts, dead letters and work queues must equal the
oracle's: no update is lost to a second writer."""

from __future__ import annotations

import asyncio
import zlib
from pathlib import Path

import pytest

from churnwatch.core.events import Event, decode_payload
from churnwatch.infra.config import ALERTS_TOPIC, DLQ_TOPIC, EVENTS_TOPIC, SCORES_TOPIC
from churnwatch.infra.kafka.produce import EventProducer, partition_for
from churnwatch.infra.kafka.topics import create_topics
from streams.records import Record
from streams.repartition import Homes
from tests.support.fleet import PARTITIONS, feed, group_of, wait_serving
from tests.support.history import check_history, oracle
from tests.support.id_formats import subscriber, variant
from tests.support.producers import produce_events

SOURCE, HOME = "churn.events", "app.churn.events.home"


def _event(i: int, sid: str) -> Event:
    return Event(event_id=f"e{i}", subscriber_id=sid, type="login", ts=1_767_225_600_000 + i)


def test_events_away_from_home_are_forwarded_packed_per_partition() -> None:
    homes = Homes(SOURCE, HOME, 4, per_message=2)
    sids = [f"+4477009001{k:02d}" for k in range(12)]
    events = [_event(i, sid) for i, sid in enumerate(sids * 2)]
    # every event arrives on partition 0 of the source, and the last two on the home topic
    records = [Record(SOURCE, 0, 100, b"", 0), Record(HOME, 3, 7, b"", 0)]
    origins = [0] * (len(events) - 2) + [1, 1]
    kept, kept_origins, forwards = homes.split(events, origins, records)

    at_home = [ev for ev in events[:-2] if partition_for(ev.subscriber_id, 4) == 0]
    assert kept == at_home + events[-2:]
    assert kept_origins == [0] * len(at_home) + [1, 1]
    away = [ev for ev in events[:-2] if partition_for(ev.subscriber_id, 4) != 0]
    assert away and sum(f.events for f in forwards) == len(away)
    assert all(f.events <= 2 for f in forwards)
    assert [f.partition for f in forwards] == sorted(f.partition for f in forwards)
    sent = []
    for f in forwards:
        decoded, rejected = decode_payload(f.value)
        assert not rejected and len(decoded) == f.events
        assert {partition_for(ev.subscriber_id, 4) for ev in decoded} == {f.partition}
        sent += decoded
    assert sorted(sent, key=lambda e: e.event_id) == sorted(away, key=lambda e: e.event_id)


def test_a_batch_at_home_is_returned_as_it_is() -> None:
    homes = Homes(SOURCE, HOME, 4)
    events = [_event(i, "+447700900123") for i in range(3)]
    p = partition_for("+447700900123", 4)
    records = [Record(SOURCE, p, 0, b"", 0)]
    assert homes.split(events, [0, 0, 0], records) == (events, [0, 0, 0], [])


def _forwarded(homes: Homes, events: list[Event], records: list[Record],
               origins: list[int], home_offset: int = 0) -> list[Record]:
    """The records of the internal topic that forward ``events`` (as the broker gives them
    back to the home partition's owner)."""
    _, _, forwards = homes.split(events, origins, records)
    return [Record(HOME, f.partition, home_offset + n, f.value, None, f.headers)
            for n, f in enumerate(forwards)]


def _decoded(records: list[Record]) -> tuple[list[Event], list[int]]:
    events, origins = [], []
    for n, rec in enumerate(records):
        valid, _ = decode_payload(rec.value)
        events += valid
        origins += [n] * len(valid)
    return events, origins


def test_copies_of_forwarded_events_are_replays_whatever_their_batches() -> None:
    """A source partition re-read after a crash forwards its events again, cut into other
    messages: at home, exactly the events at or below the highest source position applied
    are replays, also when one source record held several of them."""
    homes = Homes(SOURCE, HOME, 2, per_message=3)
    away = [sid for sid in (f"+4477009001{k:02d}" for k in range(40))
            if partition_for(sid, 2) == 1][:4]
    # source partition 0: record 10 holds three events (one message of three events),
    # records 11-14 one each
    events = [_event(i, away[i % len(away)]) for i in range(7)]
    records = [Record(SOURCE, 0, 10 + n, b"", 0) for n in range(5)]
    origins = [0, 0, 0, 1, 2, 3, 4]
    first = _forwarded(homes, events, records, origins)
    assert [len(decode_payload(r.value)[0]) for r in first] == [3, 3, 1]

    # the first two messages were applied at home
    got, got_origins = _decoded(first[:2])
    fresh, _, replayed, seen = homes.replays(got, got_origins, first[:2], {})
    assert [e.event_id for e in fresh] == [f"e{i}" for i in range(6)] and not replayed
    # the source is re-read from record 10 and forwards everything again, in messages of 2
    again = _forwarded(Homes(SOURCE, HOME, 2, per_message=2), events, records, origins, 3)
    later = first[2:] + again
    got, got_origins = _decoded(later)
    fresh, _, replayed, advanced = homes.replays(got, got_origins, later, seen)
    assert [e.event_id for e in fresh] == ["e6"]
    assert sorted(e.event_id for e in replayed) == [f"e{i}" for i in range(7)]
    assert advanced == {(HOME, 1, 0): max(seen.values()) + (1 << 16)}


def test_forwarded_events_without_a_source_header_are_fresh() -> None:
    homes = Homes(SOURCE, HOME, 2)
    events = [_event(0, "+447700900123")]
    records = [Record(HOME, 1, 0, b"", None, [("other", b"x")])]
    assert homes.replays(events, [0], records, {(HOME, 1, 0): 10**12}) == (events, [0], [], {})


@pytest.mark.integration
@pytest.mark.chaos
def test_three_partitioners_and_id_formats_lose_no_update_in_a_fleet(
        broker, redis_url, tmp_path: Path) -> None:
    asyncio.run(create_topics(broker.bootstrap, {t: PARTITIONS for t in (
        EVENTS_TOPIC, ALERTS_TOPIC, SCORES_TOPIC, DLQ_TOPIC)}))
    lines = feed(subscribers=40, days=45, seed=8)
    expected = oracle(lines)
    workers = group_of(2, broker, redis_url, tmp_path)
    slices = 6
    size = -(-len(lines) // slices)
    try:
        for w in workers:
            w.start()
        for w in workers:
            wait_serving(w)
        for k in range(slices):
            by_producer: list[list[bytes]] = [[], [], []]
            for line in lines[k * size:(k + 1) * size]:
                h = zlib.crc32(subscriber(line).encode())
                by_producer[(h + k) % 3].append(variant(line, (h // 3 + k) % 3))
            produce_events(broker.bootstrap, EVENTS_TOPIC, by_producer[0], compression="lz4",
                           partitioner="consistent_random", key="raw")
            produce_events(broker.bootstrap, EVENTS_TOPIC, by_producer[1], compression="zstd",
                           partitioner="murmur2", key="raw")

            async def packed(chunk: list[bytes] = by_producer[2]) -> None:
                async with EventProducer(broker.bootstrap, EVENTS_TOPIC, PARTITIONS, 10) as p:
                    await p.send_lines(chunk)

            asyncio.run(packed())
            workers[0].wait_caught_up(timeout=180)
        forwarded = sum(w.metric("churnwatch_forwarded_events_total") or 0 for w in workers)
        assert forwarded > len(lines) / 4  # most of the confluent-kafka producers' events
    finally:
        for w in workers:
            w.stop()
    history = check_history(broker.bootstrap, redis_url, workers[0].app_id, expected)
    assert history.alerts > 0
