"""What the pipeline takes and gives back at its edges: consumed records, dead letters and
the offsets a batch covers."""

from __future__ import annotations

from collections.abc import Sequence
from itertools import groupby
from operator import itemgetter
from typing import NamedTuple

import msgspec


class Record(NamedTuple):
    """A consumed Kafka message (or HTTP body) with its origin. A named tuple: the consumer
    makes one per fetched record, and a tuple costs a third of a frozen dataclass."""

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int | None = None
    headers: Sequence[tuple[str, bytes]] = ()


class DeadLetter(msgspec.Struct, frozen=True):
    """A rejected record: why, and exactly where it came from."""

    reason: str
    kind: str
    topic: str
    partition: int
    offset: int
    index: int
    payload: str


# a record's (topic, partition), offset, value and timestamp, read as the tuple it is (C-level, for the
# per-record passes over a batch)
topic_partition = itemgetter(0, 1)
partition_of = itemgetter(1)
offset_of = itemgetter(2)
value_of = itemgetter(3)
timestamp_of = itemgetter(4)


def oldest_timestamp(records: Sequence[Record]) -> int | None:
    """The earliest record timestamp (ms) of ``records`` (None: none has one)."""
    return min(filter(None, map(timestamp_of, records)), default=None)


def next_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset after the last of ``records``.

    A measured hot path: a batch holds runs of one partition's records, each run's largest
    offset is taken at C speed."""
    out: dict[tuple[str, int], int] = {}
    for key, run in groupby(records, topic_partition):
        after = max(map(offset_of, run)) + 1
        if after > out.get(key, 0):
            out[key] = after
    return out
