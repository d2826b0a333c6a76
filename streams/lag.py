"""Consumer lag per assigned partition, for the ``churnwatch_consumer_lag_records`` gauge.

The end of a partition is the high watermark of the consumer's own fetches (Tansu answers
ListOffsets with the base offset of the last record batch, not the true end: see
``churnwatch.infra.kafka.offsets``). What is done is the later of the next offset the pipeline will
process and the group's committed offset (so a partition assigned while already caught up
shows 0 before any record arrives).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from typing import Any, NamedTuple

from faust.exceptions import ConsumerNotStarted
from prometheus_client import Gauge


class Partition(NamedTuple):
    topic: str
    partition: int


def partition_lags(assigned: Iterable[Any], highwater: Callable[[Any], int | None],
                   processed: Mapping[tuple[str, int], int],
                   committed: Mapping[Any, int | None]) -> dict[Partition, int]:
    """Lag of each assigned topic-partition whose high watermark is known yet."""
    out: dict[Partition, int] = {}
    for tp in assigned:
        end = highwater(tp)
        if end is None:
            continue
        done = max(processed.get((tp.topic, tp.partition), 0), committed.get(tp) or 0)
        out[Partition(tp.topic, tp.partition)] = max(0, end - done)
    return out


def consumer_lags(consumer: Any, topics: Collection[str],
                  processed: Mapping[tuple[str, int], int]) -> dict[Partition, int]:
    """Lags of the partitions of ``topics`` assigned to a Faust consumer ({} before it
    starts)."""
    try:
        assigned = [tp for tp in consumer.assignment() if tp.topic in topics]
    except ConsumerNotStarted:
        return {}

    def highwater(tp: Any) -> int | None:
        try:
            return consumer.highwater(tp)
        except (AssertionError, ConsumerNotStarted):  # being revoked / stopping
            return None

    # Faust keeps the group's committed offsets (next offset to read) in this mapping
    committed = getattr(consumer, "_committed_offset", {})
    return partition_lags(assigned, highwater, processed, committed)


class LagGauge:
    """Sets the gauge from fresh lags and drops partitions no longer assigned."""

    def __init__(self, gauge: Gauge) -> None:
        self.gauge = gauge
        self._shown: set[Partition] = set()

    def update(self, lags: Mapping[Partition, int]) -> None:
        for tp, lag in lags.items():
            self.gauge.labels(tp.topic, str(tp.partition)).set(lag)
        for tp in self._shown - set(lags):
            self.gauge.remove(tp.topic, str(tp.partition))
        self._shown = set(lags)
