"""streams.intake: late dead letters point at their event, outcomes are counted per type,
and activity gives each partition's latest event times and its churned subscribers."""

from __future__ import annotations

import msgspec
import numpy as np

from churnwatch.core.events import Event
from churnwatch.infra.runtime.metrics import Metrics
from streams.intake import activity, count_outcomes, decode_records, late_letters
from streams.records import Record


def _ev(n: int, sid: str, kind: str, ts: int) -> Event:
    return Event(event_id=f"e{n}", subscriber_id=sid, type=kind, ts=ts)


EVENTS = [_ev(0, "s1", "login", 2_000_000_000_000), _ev(1, "s2", "login", 1_900_000_000_000),
          _ev(2, "s1", "churn", 2_000_000_100_000), _ev(3, "s2", "spend", 1_800_000_000_000),
          _ev(4, "s3", "login", 1_700_000_000_000)]
RECORDS = [Record("churn.events", 0, 10, b""), Record("churn.events", 3, 11, b"")]
ORIGINS = [0, 1, 0, 1, 1]


def test_late_letters_name_each_late_event_and_its_record() -> None:
    letters = late_letters(EVENTS, ORIGINS, RECORDS, "ALADL")
    assert [(d.kind, d.partition, d.offset, d.index) for d in letters] == \
        [("late", 3, 11, 1), ("late", 3, 11, 4)]
    assert msgspec.json.decode(letters[1].payload)["event_id"] == "e4"
    assert late_letters(EVENTS, ORIGINS, RECORDS, "AAAAA") == []


def test_outcomes_are_counted_by_type() -> None:
    metrics = Metrics()
    letters = late_letters(EVENTS, ORIGINS, RECORDS, "ALADL")
    by_outcome = count_outcomes(metrics, EVENTS, "ALADL", letters)
    assert by_outcome == {"applied": 2, "late": 2, "duplicate": 1}
    samples = {(s.labels["type"], s.labels["outcome"]): s.value
               for f in metrics.registry.collect() if f.name == "churnwatch_events"
               for s in f.samples if s.name.endswith("_total")}
    assert samples[("login", "late")] == 2 and samples[("churn", "applied")] == 1


def test_activity_keeps_the_latest_time_and_drops_the_churned() -> None:
    class Staged:
        rows = np.array([0, 1, 2, 3])

    clocks, gone = activity(EVENTS, ORIGINS, RECORDS, Staged())  # type: ignore[arg-type]
    assert clocks == {0: {}, 3: {"s2": 1_900_000_000_000}}
    assert gone == {0: ["s1"]}


def test_invalid_records_become_dead_letters_with_their_index() -> None:
    records = [Record("churn.events", 1, 5, b'[{"event_id": "x"}, 3]')]
    events, origins, letters = decode_records(records)
    assert events == [] and origins == []
    assert [(d.kind, d.offset, d.index) for d in letters] == [("invalid", 5, 0), ("invalid", 5, 1)]
