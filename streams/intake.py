"""A batch's records in, and what the pipeline records about its events. Pure.

- :func:`decode_records`: Kafka records → valid events (with the record each came from) and
  dead letters for the invalid ones (and for the markers of undecodable record batches);
- :func:`future_letters`: dead letters for events from a clock ahead of the worker's;
- :func:`late_letters`: dead letters for events older than their subscriber's clock minus
  the allowed lateness;
- :func:`count_outcomes`: events by type and outcome, dead letters by kind (metrics);
- :func:`activity`: per partition, each subscriber's latest applied event time and those who
  churned (the silence index's input).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence

import msgspec
import numpy as np

from churnwatch.core.events import TYPE_CODE, Event, decode_payload, decode_plain
from churnwatch.infra.runtime.metrics import Metrics, inc_counts
from features.columns import runs
from features.store import LATE, BatchFeatures
from streams.records import DeadLetter, Record, partition_of
from streams.undecodable import reason_of

_OUTCOME = {"A": "applied", "D": "duplicate", "L": "late"}
CHURN = TYPE_CODE["churn"]


def decode_records(records: Sequence[Record]) -> tuple[list[Event], list[int], list[DeadLetter]]:
    """Valid events, the index of each one's record, and the invalid ones as dead letters.

    The records of one plain JSON event each (the usual Kafka message) are decoded in one
    loop (:func:`~churnwatch.core.events.decode_plain`); the others (arrays, NDJSON, markers,
    invalid events) one by one, as :func:`~churnwatch.core.events.decode_payload` does."""
    events, origins, rest = decode_plain([rec.value for rec in records])
    letters: list[DeadLetter] = []
    if not rest:
        return events, origins, letters
    more: list[Event] = []
    more_origins: list[int] = []
    for n in rest:
        rec = records[n]
        if not rec.value and rec.headers and (why := reason_of(rec.headers)) is not None:
            letters.append(DeadLetter(
                f"undecodable: the Kafka client could not decode its record batch ({why})",
                "undecodable", rec.topic, rec.partition, rec.offset, -1, ""))
            continue
        valid, rejected = decode_payload(rec.value)
        more += valid
        more_origins += [n] * len(valid)
        for rej in rejected:
            letters.append(DeadLetter(
                rej.reason, "invalid", rec.topic, rec.partition, rec.offset, rej.index,
                rej.raw.decode("utf-8", "replace")))
    if not events:
        return more, more_origins, letters
    if more:  # both kinds of record: back to record order (a stable sort keeps each's order)
        events += more
        origins += more_origins
        order = sorted(range(len(origins)), key=origins.__getitem__)
        events = [events[i] for i in order]
        origins = [origins[i] for i in order]
    return events, origins, letters


def future_letters(events: list[Event], origins: list[int], records: Sequence[Record],
                   limit_ms: int) -> tuple[list[Event], list[int], list[DeadLetter]]:
    """The events whose time is at most ``limit_ms`` (with their records' indices), and dead
    letters for the others: their producer's clock is ahead of the worker's by more than
    the tolerance (``StoreConfig.future_ms``)."""
    if max([ev.ts for ev in events], default=limit_ms) <= limit_ms:  # the usual batch
        return events, origins, []
    kept: list[Event] = []
    kept_origins: list[int] = []
    letters: list[DeadLetter] = []
    for ev, n in zip(events, origins):
        if ev.ts <= limit_ms:
            kept.append(ev)
            kept_origins.append(n)
            continue
        rec = records[n]
        letters.append(DeadLetter(
            "future: ts is ahead of the worker's clock by more than the tolerance "
            "(CHURNWATCH_FUTURE_TOLERANCE_S); fix the producer's clock", "future",
            rec.topic, rec.partition, rec.offset, -1, msgspec.json.encode(ev).decode()))
    return kept, kept_origins, letters


def late_letters(events: Sequence[Event], origins: Sequence[int], records: Sequence[Record],
                 status: str) -> list[DeadLetter]:
    """Dead letters for the events the store found late (``status`` per event)."""
    out: list[DeadLetter] = []
    at = status.find(LATE)
    while at >= 0:
        rec = records[origins[at]]
        out.append(DeadLetter(
            "late: older than the subscriber's clock minus the allowed lateness", "late",
            rec.topic, rec.partition, rec.offset, at, msgspec.json.encode(events[at]).decode()))
        at = status.find(LATE, at + 1)
    return out


def count_outcomes(metrics: Metrics, events: Sequence[Event], status: str,
                   dead_letters: Sequence[DeadLetter]) -> Counter[str]:
    """Count events by (type, outcome) and dead letters by kind; returns events by outcome."""
    counts = Counter(zip([ev.type for ev in events], status))
    inc_counts(metrics.events, Counter({(kind, _OUTCOME[code]): n
                                        for (kind, code), n in counts.items()}))
    inc_counts(metrics.dead_letters, Counter((d.kind,) for d in dead_letters))
    by_outcome: Counter[str] = Counter()
    for (_, code), n in counts.items():
        by_outcome[_OUTCOME[code]] += n
    return by_outcome


def activity(origins: list[int], records: Sequence[Record], staged: BatchFeatures,
             home: Callable[[str], int] | None = None
             ) -> tuple[dict[int, dict[str, int]], dict[int, list[str]]]:
    """Per partition: the latest applied event time of each subscriber in the batch, and the
    subscribers whose last applied event was ``churn`` (they left: no silence checks; in
    batch order of subscribers, as ``staged.subscribers``). The
    partition is the subscriber's ``home`` partition if given (events may be applied away
    from it, ``streams.repartition``), else its record's.

    A measured hot path (once per applied event): grouped with numpy over the batch's
    columns (``staged.columns``), ``home`` called once per subscriber."""
    rows = staged.rows
    if not len(rows):
        return {}, {}
    columns, subscribers = staged.columns, staged.subscribers
    assert columns is not None, "activity takes FeatureStore.stage's answer"
    sub, ts = columns.sub[rows], columns.ts[rows]
    n = len(subscribers)
    if home is None:
        part = np.fromiter(map(partition_of, map(records.__getitem__,
                                                  map(origins.__getitem__, rows.tolist()))),
                           np.int64, len(rows))
    else:
        homes = np.zeros(n, np.int64)
        present = np.unique(sub)
        homes[present] = [home(subscribers[k]) for k in present.tolist()]
        part = homes[sub]
    # each subscriber's last applied row
    by_sub, starts = runs(sub)
    last = by_sub[np.append(starts[1:], len(by_sub)) - 1]
    left_from = np.full(n, -1, np.int64)  # the partition a churned subscriber left from
    churned = columns.kind[rows][last] == CHURN
    left_from[sub[last][churned]] = part[last][churned]
    # the latest time per (partition, subscriber): groups in partition order
    key = part * n + sub
    order, starts = runs(key)
    latest = np.maximum.reduceat(ts[order], starts)
    group_part, group_sub = np.divmod(key[order[starts]], n)
    kept = (latest > 0) & (left_from[group_sub] != group_part)
    clocks: dict[int, dict[str, int]] = {}
    at = np.flatnonzero(np.append(True, group_part[1:] != group_part[:-1]))
    for a, b in zip(at.tolist(), np.append(at[1:], len(group_part)).tolist()):
        mine = kept[a:b]
        clocks[int(group_part[a])] = dict(zip(
            map(subscribers.__getitem__, group_sub[a:b][mine].tolist()),
            latest[a:b][mine].tolist()))
    gone: dict[int, list[str]] = {}
    leaving = np.flatnonzero(left_from >= 0)
    for k, partition in zip(leaving.tolist(), left_from[leaving].tolist()):
        gone.setdefault(partition, []).append(subscribers[k])
    return clocks, gone
