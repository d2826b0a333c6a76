"""Every subscriber's events on one partition: its home, whatever the producer did.

A subscriber's states are written by the worker that owns its partition. That holds only if
all of its events arrive on one partition, and producers do not agree on which: librdkafka's
default partitioner hashes keys with CRC32, Java's with murmur2, some producers send no key,
and one phone number is written in several formats (``+44 7700 900123``, ``447700900123``).
Two workers applying one subscriber's events from two partitions overwrite each other's
updates.

So each subscriber has a *home partition*: Kafka's default (murmur2) partition of its
normalised id, the one ``churnwatch replay``, the HTTP ingest and the web API produce to. An
event of ``churn.events`` that arrives elsewhere is not applied there: it is forwarded,
packed per partition, to the same partition number of an internal topic with as many
partitions (:func:`churnwatch.infra.config.home_topic`), and applied by that partition's owner.
Faust's assignor gives both topics' partition ``p`` to one worker (they are co-partitioned),
so one worker writes each subscriber. Forwarded messages are published before the batch's
Redis commit, and the source offsets advance over them like over applied events.

A crash between the two forwards them again, possibly months of event time later (a
catch-up), when their ids may have expired from the subscriber's state. So each forwarded
message carries its events' source partition and positions (the ``cw-source`` header), and
the home partition's owner stores, with its states, the highest source position (offset,
then index in the record) it applied from each source partition (:meth:`Homes.seen_field`):
a copy of an event at or below it is a replay, skipped like a record re-read below the
applied offset.

A worker that owns an event's home partition too has no need to forward it: it applies it
where it arrived (:meth:`Homes.split`'s ``here``), its states fenced on the home partition's
claim. It does so only once it has applied its home partition's forwarded events up to the
end the internal topic had when the partition was assigned (:class:`streams.assignment.
Assignment`), so the events a former owner forwarded are applied before the ones that follow
them; and it stores their source positions like forwarded ones, so a late forwarded copy (from
a stalled former owner) is a replay and the copy re-read here after one is too. A single
worker, or a fleet whose producers key like ``churnwatch replay``, forwards nothing.
"""

from __future__ import annotations

from collections.abc import Container, Sequence
from dataclasses import dataclass
from typing import NamedTuple

import msgspec
import numpy as np

from churnwatch.core.events import Event
from churnwatch.infra.kafka.produce import partition_for
from streams.records import Record

__all__ = ["HEADER", "Forward", "Homes", "Seen", "Split"]

_encode = msgspec.json.Encoder().encode


class Forward(msgspec.Struct, frozen=True):
    """One message for the internal topic: a JSON array of events of one home partition,
    from one source partition, with their source positions (``header``)."""

    partition: int
    value: bytes
    events: int
    header: bytes

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return [(HEADER, self.header)]


HEADER = "cw-source"  # b"<source partition>:" then each event's source position, int64 LE
Seen = dict[tuple[str, int, int], int]  # (home topic, home partition, source partition) →
# the highest source position applied from it


def position(offset: int, index: int) -> int:
    """An event's position in its source partition: its record's offset, then its index
    among the record's valid events (a record is decoded the same way every time)."""
    return (offset << 16) | min(index, 0xFFFF)


def _header(partition: int, positions: list[int]) -> bytes:
    return b"%d:" % partition + np.asarray(positions, "<i8").tobytes()


def _source(headers: Sequence[tuple[str, bytes]]) -> tuple[int, np.ndarray] | None:
    for name, value in headers:
        if name == HEADER and value:
            head, sep, body = bytes(value).partition(b":")
            if sep and head.isdigit() and len(body) % 8 == 0:
                return int(head), np.frombuffer(body, "<i8")
    return None


class Split(NamedTuple):
    """A batch's events split by :meth:`Homes.split`."""

    kept: list[Event]  # to apply here
    origins: list[int]  # their records' indices
    forwards: list[Forward]  # the messages forwarding the others home
    replayed: list[Event]  # away from home, but applied here or at home before
    advanced: Seen  # the highest source positions of the away events applied here
    borrowed: frozenset[int]  # their home partitions (the commit is fenced on their claims)
    here: int = 0  # how many away events are applied here


@dataclass(frozen=True)
class Homes:
    """Splits a batch's events into those at home and those to forward, and finds the
    replayed copies among forwarded events.

    ``source``: the topic producers write (``churn.events``); ``topic``: the internal topic
    of forwarded events; ``partitions``: their partition count; ``per_message``: events
    packed per forwarded message."""

    source: str
    topic: str
    partitions: int
    per_message: int = 500

    def home(self, subscriber_id: str) -> int:
        """The home partition of a normalised subscriber id (``partition_for`` caches it)."""
        return partition_for(subscriber_id, self.partitions)

    def split(self, events: list[Event], origins: list[int], records: Sequence[Record],
              here: Container[int] = frozenset(), seen: Seen | None = None) -> Split:
        """The events to apply here (with their records' indices) and the messages that
        forward the others to their home partitions. Events of ``churn.events`` whose home
        is in ``here`` (home partitions this worker owns and has caught up) are applied here
        too, unless ``seen`` says a forwarded copy of them was applied already."""
        kept: list[Event] = []
        kept_origins: list[int] = []
        away: dict[tuple[int, int], tuple[list[Event], list[int]]] = {}
        replayed: list[Event] = []
        advanced: Seen = {}
        borrowed: set[int] = set()
        here_count = 0
        seen = seen or {}
        source, home, topic = self.source, self.home, self.topic
        last, index = -1, 0  # the record of the previous event, and the event's index in it
        for ev, n in zip(events, origins):
            index = index + 1 if n == last else 0
            last = n
            rec = records[n]
            if rec.topic == source:
                p = home(ev.subscriber_id)
                if p != rec.partition:
                    at = position(rec.offset, index)
                    if p in here:
                        key = (topic, p, rec.partition)
                        if at <= advanced.get(key, seen.get(key, -1)):
                            replayed.append(ev)
                            continue
                        advanced[key] = at
                        borrowed.add(p)
                        here_count += 1
                    else:
                        evs, positions = away.setdefault((p, rec.partition), ([], []))
                        evs.append(ev)
                        positions.append(at)
                        continue
            kept.append(ev)
            kept_origins.append(n)
        if not away and not replayed:
            return Split(events, origins, [], [], advanced, frozenset(borrowed), here_count)
        step = self.per_message
        forwards = [Forward(p, _encode(evs[i:i + step]), len(evs[i:i + step]),
                            _header(src, positions[i:i + step]))
                    for (p, src), (evs, positions) in sorted(away.items())
                    for i in range(0, len(evs), step)]
        return Split(kept, kept_origins, forwards, replayed, advanced, frozenset(borrowed),
                     here_count)

    def seen_field(self, key: tuple[str, int, int]) -> str:
        """The applied-offsets hash field of a (home topic, home partition, source
        partition) key."""
        return f"{key[0]}:{key[1]}<{key[2]}"

    def seen_keys(self, partitions: Sequence[tuple[str, int]]) -> list[tuple[str, int, int]]:
        """The keys of the home partitions among ``partitions``, one per source partition."""
        return [(t, h, p) for t, h in partitions if t == self.topic
                for p in range(self.partitions)]

    def replays(self, events: list[Event], origins: list[int], records: Sequence[Record],
                seen: Seen) -> tuple[list[Event], list[int], list[Event], Seen]:
        """Of the batch's events, those not forwarded before (with their records' indices),
        the copies of forwarded events already applied (at or below ``seen``), and the
        highest source positions of the fresh forwarded events (to store with the batch).
        Events of records without a well-formed ``cw-source`` header are fresh."""
        topic = self.topic
        if not any(rec.topic == topic for rec in records):  # nothing forwarded in the batch
            return events, origins, [], {}
        fresh: list[Event] = []
        fresh_origins: list[int] = []
        replayed: list[Event] = []
        advanced: Seen = {}
        k = 0  # event index within its record
        last = -1
        offsets: np.ndarray | None = None
        key: tuple[str, int, int] | None = None
        for ev, n in zip(events, origins):
            if n != last:  # the first event of record n
                last, k, rec = n, 0, records[n]
                offsets, key = None, None
                if rec.topic == topic and (src := _source(rec.headers)) is not None:
                    key = (topic, rec.partition, src[0])
                    offsets = src[1]
            if key is not None and offsets is not None and k < len(offsets):
                at = int(offsets[k])
                if at <= advanced.get(key, seen.get(key, -1)):
                    replayed.append(ev)
                    k += 1
                    continue
                advanced[key] = at
            fresh.append(ev)
            fresh_origins.append(n)
            k += 1
        return fresh, fresh_origins, replayed, advanced
