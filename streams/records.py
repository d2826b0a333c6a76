"""What the pipeline takes and gives back at its edges: consumed records, dead letters, the
offsets a batch covers, and which Redis errors are worth retrying."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import msgspec
import redis.exceptions

RETRYABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
             redis.exceptions.BusyLoadingError, redis.exceptions.OutOfMemoryError,
             redis.exceptions.ReadOnlyError,
             # Redis Cluster: a slot moved or is migrating, a failover is under way
             redis.exceptions.AskError, redis.exceptions.TryAgainError,
             redis.exceptions.ClusterError, redis.exceptions.SlotNotCoveredError)


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


def is_retryable(exc: BaseException) -> bool:
    """A Redis error worth waiting out: connection trouble, loading, read-only replica, or out
    of memory, also when a Lua script hits it (redis-py then raises a plain ResponseError)."""
    return isinstance(exc, RETRYABLE) or (
        isinstance(exc, redis.exceptions.ResponseError) and "-OOM " in str(exc))
