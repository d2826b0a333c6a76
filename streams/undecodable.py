"""Record batches the Kafka client cannot decode become marker records, not a poison pill.

aiokafka decodes a fetched partition's record batches while the consumer iterates them. A
batch it cannot decode (a corrupt compressed payload, a codec it lacks, a CRC mismatch, as a
broken producer or disk can leave them) raises out of the fetch, and the next fetch of that
partition reads the same batch again: the worker could neither skip nor dead-letter it, and
every worker of the group that took the partition would stop on it.

:func:`install` wraps the record sets aiokafka's fetcher reads, batch by batch: a batch that
fails to decode yields instead one *marker* record per offset it covers, with no value and
the :data:`HEADER` header giving the reason. The consumer returns the markers like records,
the pipeline dead-letters each one (kind ``undecodable``, with its coordinates) and the
offsets move past the batch like past any other record. Decoded batches go through unchanged.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, NamedTuple

from aiokafka.consumer import fetcher as _fetcher
from aiokafka.errors import CorruptRecordException

__all__ = ["HEADER", "install", "reason_of"]

HEADER = "cw-undecodable"


class _Marker(NamedTuple):
    """Stands for one record of a batch that could not be decoded (the attributes aiokafka
    reads from a record)."""

    offset: int
    headers: tuple[tuple[str, bytes], ...]
    timestamp: int | None = None
    timestamp_type: int = 0
    key: bytes | None = None
    value: bytes | None = None
    checksum: int | None = None


class _Batch:
    """One fetched record batch: checked and decoded as a whole when iterated."""

    __slots__ = ("_batch",)

    def __init__(self, batch: Any) -> None:
        self._batch = batch

    def __getattr__(self, name: str) -> Any:
        return getattr(self._batch, name)

    def validate_crc(self) -> bool:
        return True  # checked when iterated: a mismatch yields markers

    def __iter__(self) -> Iterator[Any]:
        batch = self._batch
        try:
            if not batch.validate_crc():
                raise CorruptRecordException("the record batch's CRC does not match")
            records = list(batch)
        except Exception as exc:  # noqa: BLE001 - every codec library raises its own errors
            reason = f"{type(exc).__name__}: {exc}"[:300].encode()
            last = batch.next_offset - 1
            first = getattr(batch, "base_offset", last)
            return iter([_Marker(offset, ((HEADER, reason),))
                         for offset in range(first, last + 1)])
        return iter(records)


class _Records:
    """A fetched record set whose batches are :class:`_Batch` es."""

    __slots__ = ("_records",)
    _cls: Any = None  # aiokafka's own record set class

    def __init__(self, buffer: Any) -> None:
        self._records = self._cls(buffer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._records, name)

    def has_next(self) -> bool:
        return self._records.has_next()

    def next_batch(self, *args: Any) -> Any:
        batch = self._records.next_batch(*args)
        return None if batch is None else _Batch(batch)


def install() -> None:
    """Wrap the record sets of every aiokafka fetcher in this process (idempotent)."""
    current = getattr(_fetcher, "MemoryRecords", None)
    if current is None:  # guards the pinned aiokafka internals
        raise RuntimeError("aiokafka's fetcher no longer reads MemoryRecords; update "
                           "streams/undecodable.py for this aiokafka version")
    if current is not _Records:
        _Records._cls = current
        _fetcher.MemoryRecords = _Records  # type: ignore[attr-defined, misc]


def reason_of(headers: Any) -> str | None:
    """Why the record is a marker (from its headers), or None for a real record."""
    for name, value in headers:
        if name == HEADER:
            return bytes(value).decode("utf-8", "replace")
    return None
