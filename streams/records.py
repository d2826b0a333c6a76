"""What the pipeline takes and gives back at its edges: consumed records, dead letters, the
split of a large batch into bounded runs, and which Redis errors are worth retrying."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
import redis.exceptions

RETRYABLE = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
             redis.exceptions.BusyLoadingError, redis.exceptions.OutOfMemoryError,
             redis.exceptions.ReadOnlyError,
             # Redis Cluster: a slot moved or is migrating, a failover is under way
             redis.exceptions.AskError, redis.exceptions.TryAgainError,
             redis.exceptions.ClusterError, redis.exceptions.SlotNotCoveredError)


@dataclass(frozen=True)
class Record:
    """A consumed Kafka message (or HTTP body) with its origin."""

    topic: str
    partition: int
    offset: int
    value: bytes
    timestamp_ms: int | None = None


class DeadLetter(msgspec.Struct, frozen=True):
    """A rejected record: why, and exactly where it came from."""

    reason: str
    kind: str
    topic: str
    partition: int
    offset: int
    index: int
    payload: str


def split_by_size(records: Sequence[Record], max_bytes: int) -> list[list[Record]]:
    """Consecutive runs of ``records`` of at most ``max_bytes`` of values each (a record larger
    than that is a run of its own): a batch of many multi-event messages is processed as
    several pipeline runs, so the memory and time of one run stay bounded."""
    runs: list[list[Record]] = [[]]
    size = 0
    for rec in records:
        if runs[-1] and size + len(rec.value) > max_bytes:
            runs.append([])
            size = 0
        runs[-1].append(rec)
        size += len(rec.value)
    return runs if runs[0] else []


def is_retryable(exc: BaseException) -> bool:
    """A Redis error worth waiting out: connection trouble, loading, read-only replica, or out
    of memory, also when a Lua script hits it (redis-py then raises a plain ResponseError)."""
    return isinstance(exc, RETRYABLE) or (
        isinstance(exc, redis.exceptions.ResponseError) and "-OOM " in str(exc))
