"""What the pipeline takes and gives back at its edges: consumed records, dead letters and
the offsets a batch covers."""

from __future__ import annotations

from collections.abc import Sequence
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


def next_offsets(records: Sequence[Record]) -> dict[tuple[str, int], int]:
    """Per (topic, partition), the offset after the last of ``records``."""
    out: dict[tuple[str, int], int] = {}
    for rec in records:
        key = (rec.topic, rec.partition)
        if rec.offset >= out.get(key, 0):
            out[key] = rec.offset + 1
    return out
