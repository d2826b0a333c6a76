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
partitions (:func:`churnwatch.config.home_topic`), and applied by that partition's owner.
Faust's assignor gives both topics' partition ``p`` to one worker (they are co-partitioned),
so one worker writes each subscriber. Forwarded messages are published before the batch's
Redis commit (a crash in between forwards them again: event ids make the copies
duplicates), and the source offsets advance over them like over applied events.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import msgspec

from churnwatch.events import Event
from churnwatch.produce import partition_for
from streams.records import Record

__all__ = ["Forward", "Homes"]

_encode = msgspec.json.Encoder().encode


class Forward(msgspec.Struct, frozen=True):
    """One message for the internal topic: a JSON array of events of one home partition."""

    partition: int
    value: bytes
    events: int


@dataclass
class Homes:
    """Splits a batch's events into those at home and those to forward.

    ``source``: the topic producers write (``churn.events``); ``partitions``: its partition
    count (the internal topic has as many); ``per_message``: events packed per forwarded
    message. Events of other topics (the internal one) are always at home."""

    source: str
    topic: str
    partitions: int
    per_message: int = 500
    _cache: dict[str, int] = field(default_factory=dict, repr=False)

    def home(self, subscriber_id: str) -> int:
        """The home partition of a normalised subscriber id."""
        cache = self._cache
        p = cache.get(subscriber_id)
        if p is None:
            if len(cache) >= 1 << 20:
                cache.clear()
            p = cache[subscriber_id] = partition_for(subscriber_id, self.partitions)
        return p

    def split(self, events: list[Event], origins: list[int], records: Sequence[Record]
              ) -> tuple[list[Event], list[int], list[Forward]]:
        """The events to apply here (with their records' indices) and the messages that
        forward the others to their home partitions."""
        kept: list[Event] = []
        kept_origins: list[int] = []
        away: dict[int, list[Event]] = {}
        source, home = self.source, self.home
        for ev, n in zip(events, origins):
            rec = records[n]
            if rec.topic == source:
                p = home(ev.subscriber_id)
                if p != rec.partition:
                    away.setdefault(p, []).append(ev)
                    continue
            kept.append(ev)
            kept_origins.append(n)
        if not away:
            return events, origins, []
        step = self.per_message
        forwards = [Forward(p, _encode(evs[i:i + step]), len(evs[i:i + step]))
                    for p, evs in sorted(away.items()) for i in range(0, len(evs), step)]
        return kept, kept_origins, forwards
