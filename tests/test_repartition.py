"""One writer per subscriber whatever the producers do (``streams.repartition``).

Unit: which events a batch keeps and which it forwards, packed per home partition.

Fleet: two workers share four partitions; one feed is sent through three producers that place
a subscriber on different partitions: confluent-kafka with librdkafka's default partitioner
(CRC32) keyed by the id as written, confluent-kafka with murmur2 keyed by the id as written,
and ``churnwatch replay``'s packer (murmur2 of the normalised id). The ids are written in
several formats (``+44 7954 288876``, ``00447954288876``). Each slice of the feed gives each
subscriber to one producer and one format, and the next slice starts once the group caught
up, so every subscriber's events arrive in the feed's order but on several partitions,
owned by both workers. Each worker forwards the away events whose home the other owns and
applies the others where they arrive. Before the last slice one worker is SIGKILLed once it
forwarded some of the slice: the other takes every partition over and applies the forwarded
events before applying away events itself. Features, alerts, dead letters and work queues
must equal the oracle's: no update is lost to a second writer or to the takeover."""

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
    kept, kept_origins, forwards, *_ = homes.split(events, origins, records)

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
    split = homes.split(events, [0, 0, 0], records)
    assert (split.kept, split.origins, split.forwards, split.replayed) == (
        events, [0, 0, 0], [], [])


def _forwarded(homes: Homes, events: list[Event], records: list[Record],
               origins: list[int], home_offset: int = 0) -> list[Record]:
    """The records of the internal topic that forward ``events`` (as the broker gives them
    back to the home partition's owner)."""
    forwards = homes.split(events, origins, records).forwards
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


def test_away_events_of_a_home_partition_owned_here_are_applied_here() -> None:
    """A worker that owns (and caught up) an away event's home partition applies it where it
    arrived: nothing is forwarded for it, its position is stored like a forwarded one's and
    its commit is fenced on the home partition; the others are still forwarded."""
    homes = Homes(SOURCE, HOME, 4)
    sids = [f"+4477009001{k:02d}" for k in range(16)]
    events = [_event(i, sid) for i, sid in enumerate(sids)]
    records = [Record(SOURCE, 0, 100 + i, b"", 0) for i in range(len(events))]
    origins = list(range(len(events)))
    split = homes.split(events, origins, records, here={2})

    homes_of = [partition_for(ev.subscriber_id, 4) for ev in events]
    assert {0, 2} < set(homes_of) and {1, 3} & set(homes_of)
    assert split.kept == [ev for ev, p in zip(events, homes_of) if p in (0, 2)]
    assert split.origins == [n for n, p in zip(origins, homes_of) if p in (0, 2)]
    forwarded = [ev for f in split.forwards for ev in decode_payload(f.value)[0]]
    assert sorted(e.event_id for e in forwarded) == sorted(
        ev.event_id for ev, p in zip(events, homes_of) if p in (1, 3))
    assert split.borrowed == {2} and split.here == homes_of.count(2)
    last = max(n for n, p in enumerate(homes_of) if p == 2)
    assert split.advanced == {(HOME, 2, 0): (100 + last) << 16}


def test_a_copy_applied_at_home_is_a_replay_when_read_again_away() -> None:
    """A stalled former owner forwarded events; their home owner applied them; the same events
    re-read from the source by the home owner (now owning both) are replays, and the ones past
    them are applied here."""
    homes = Homes(SOURCE, HOME, 2)
    away = [sid for sid in (f"+4477009001{k:02d}" for k in range(40))
            if partition_for(sid, 2) == 1][:3]
    events = [_event(i, away[i]) for i in range(3)]
    records = [Record(SOURCE, 0, 10 + n, b"", 0) for n in range(3)]
    forwarded = _forwarded(homes, events[:2], records[:2], [0, 1])
    got, got_origins = _decoded(forwarded)
    _, _, _, seen = homes.replays(got, got_origins, forwarded, {})

    split = homes.split(events, [0, 1, 2], records, here={1}, seen=seen)
    assert [e.event_id for e in split.replayed] == ["e0", "e1"]
    assert split.kept == [events[2]] and not split.forwards
    assert split.advanced == {(HOME, 1, 0): 12 << 16}
    # and a forwarded copy of an event applied here is a replay at home
    late = _forwarded(homes, events, records, [0, 1, 2], 5)
    got, got_origins = _decoded(late)
    fresh, _, replayed, _ = homes.replays(got, got_origins, late, {**seen, **split.advanced})
    assert not fresh and len(replayed) == 3


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
            if k == slices - 2:
                # the second worker is killed once it forwarded some of this slice: the first
                # takes its partitions over, with events it forwarded still to be applied
                before = workers[1].metric("churnwatch_forwarded_events_total") or 0
                workers[1].wait_for(lambda: (workers[1].metric(
                    "churnwatch_forwarded_events_total") or 0) > before, 120, "a forward")
                moved = [w.metric(name) or 0 for w in workers
                         for name in ("churnwatch_forwarded_events_total",
                                      "churnwatch_away_applied_events_total")]
                assert workers[1].proc is not None
                workers[1].proc.kill()
            workers[0].wait_caught_up(timeout=180)
        forwarded, here = moved[0] + moved[2], moved[1] + moved[3]
        # the confluent-kafka producers' events arrive away from home: each worker forwards
        # those whose home the other owns and applies the others where they arrive
        assert forwarded > len(lines) / 20 and here > len(lines) / 20
        alone_here = workers[0].metric("churnwatch_away_applied_events_total") or 0
        assert alone_here > moved[1]  # alone, it applies every event where it arrives
    finally:
        for w in workers:
            w.stop()
    history = check_history(broker.bootstrap, redis_url, workers[0].app_id, expected)
    assert history.alerts > 0


def test_away_events_are_applied_here_once_the_home_partition_caught_up() -> None:
    """Only home partitions this worker owns, and only once their forwarded events are applied
    up to the internal topic's end read after this assignment's claim and past this worker's
    own forwards, none of which may still be under way (a batch of an earlier assignment
    included)."""
    from churnwatch.core.keys import Keys
    from streams.assignment import Assignment
    from streams.repartition import Forward

    part = Assignment(None, Keys(), Homes(SOURCE, HOME, 4))
    part.own("app", "member")
    assert part.owners is not None
    part.owners.tokens = {tp: "token" for tp in [(SOURCE, 1), (SOURCE, 2), (HOME, 1), (HOME, 2)]}
    part.count = 1
    assert part.home_partitions() == [1, 2]
    assert part.here() == frozenset()  # the ends are not read yet
    forwarding = part.forwarding_until([Forward(1, b"[]", 1, b"0:")], {})
    until = forwarding.__enter__()  # a batch forwards to partition 1
    part.home_ends({1: 0, 2: 5}, assignment=0)  # read for an earlier assignment: ignored
    assert part.here() == frozenset()
    part.home_ends({1: 0, 2: 5}, assignment=1)
    assert part.here() == frozenset()  # 1: its forward is under way; 2: not caught up
    loop = asyncio.new_event_loop()
    landed = loop.create_future()
    until(landed)
    forwarding.__exit__(None, None, None)
    assert part.here() == frozenset()  # still under way until its commit is done
    landed.set_result(None)
    loop.run_until_complete(asyncio.sleep(0))
    loop.close()
    assert part.forwarding[1] == 0
    assert part.here() == {1}
    part.applied[(HOME, 2)] = 4
    assert part.here() == {1}
    part.applied[(HOME, 2)] = 5
    assert part.here() == {1, 2}


def test_a_partition_this_worker_forwarded_to_waits_for_those_forwards() -> None:
    from churnwatch.core.keys import Keys
    from streams.assignment import UNKNOWN_OFFSET, Assignment
    from streams.repartition import Forward

    part = Assignment(None, Keys(), Homes(SOURCE, HOME, 4))
    part.own("app", "member")
    assert part.owners is not None
    part.owners.tokens = {tp: "token" for tp in [(SOURCE, 3), (HOME, 3)]}
    with part.forwarding_until([Forward(3, b"[]", 1, b"0:")], {3: 9}):
        pass  # the block left without a commit task: the batch is over
    part.count = 1
    part.home_ends({3: 4}, assignment=1)
    assert part.here() == frozenset()  # its own forward ends at 9
    part.applied[(HOME, 3)] = 9
    assert part.here() == {3}
    with pytest.raises(RuntimeError):
        with part.forwarding_until([Forward(0, b"[]", 1, b"0:")], {0: UNKNOWN_OFFSET}):
            raise RuntimeError("the publisher could not say where they landed")
    assert part.forwarding[0] == 0 and part.forwarded_to[0] == UNKNOWN_OFFSET
