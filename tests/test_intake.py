"""streams.intake: late dead letters point at their event, outcomes are counted per type,
and activity gives each partition's latest event times and its churned subscribers."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from churnwatch.core.events import Event
from churnwatch.infra.runtime.metrics import Metrics
from features.columns import encode_batch
from features.store import BatchFeatures
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


def _staged(events: list[Event], rows: list[int]) -> BatchFeatures:
    """What the store's stage gives activity: the applied rows and the batch's columns."""
    subscribers, columns = encode_batch(events)
    return BatchFeatures("", np.array(rows, np.int64), np.empty((len(rows), 0)), [],
                         subscribers, {}, [], columns=columns)


def test_activity_keeps_the_latest_time_and_drops_the_churned() -> None:
    clocks, gone = activity(ORIGINS, RECORDS, _staged(EVENTS, [0, 1, 2, 3]))
    assert clocks == {0: {}, 3: {"s2": 1_900_000_000_000}}
    assert gone == {0: ["s1"]}


def test_invalid_records_become_dead_letters_with_their_index() -> None:
    records = [Record("churn.events", 1, 5, b'[{"event_id": "x"}, 3]')]
    events, origins, letters = decode_records(records)
    assert events == [] and origins == []
    assert [(d.kind, d.offset, d.index) for d in letters] == [("invalid", 5, 0), ("invalid", 5, 1)]


def reference_activity(events: list[Event], origins: list[int], records: list[Record],
                       rows: list[int], home: Callable[[str], int] | None
                       ) -> tuple[dict[int, dict[str, int]], dict[int, list[str]]]:
    """activity as a plain loop over the applied rows, one event at a time."""
    clocks: dict[int, dict[str, int]] = {}
    last: dict[str, tuple[int, str]] = {}
    for i in rows:
        ev = events[i]
        partition = home(ev.subscriber_id) if home is not None else records[origins[i]].partition
        sub_clocks = clocks.setdefault(partition, {})
        if ev.ts > sub_clocks.get(ev.subscriber_id, 0):
            sub_clocks[ev.subscriber_id] = ev.ts
        last[ev.subscriber_id] = (partition, ev.type)
    gone: dict[int, list[str]] = {}
    for sid, (partition, kind) in last.items():
        if kind == "churn":
            clocks[partition].pop(sid, None)
            gone.setdefault(partition, []).append(sid)
    return clocks, gone


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_activity_matches_the_event_by_event_loop(data: st.DataObject) -> None:
    records = [Record("churn.events", data.draw(st.integers(0, 3)), n, b"")
               for n in range(data.draw(st.integers(1, 6)))]
    drawn = data.draw(st.lists(st.tuples(st.sampled_from(["s1", "s2", "s3", "s4"]),
                                         st.sampled_from(["login", "usage", "churn", "active"]),
                                         st.integers(1_700_000_000_000, 1_700_000_000_009),
                                         st.integers(0, len(records) - 1)), max_size=30))
    events = [_ev(n, sid, kind, ts) for n, (sid, kind, ts, _) in enumerate(drawn)]
    origins = [origin for *_, origin in drawn]
    rows = sorted(data.draw(st.sets(st.integers(0, max(len(events) - 1, 0)),
                                    max_size=len(events))))

    staged = _staged(events, rows)
    for home in (None, {"s1": 0, "s2": 5, "s3": 5, "s4": 1}.__getitem__):
        clocks, gone = activity(origins, records, staged, home)
        want_clocks, want_gone = reference_activity(events, origins, records, rows, home)
        assert clocks == want_clocks
        assert {p: sorted(sids) for p, sids in gone.items()} == \
            {p: sorted(sids) for p, sids in want_gone.items()}  # (their order means nothing)
