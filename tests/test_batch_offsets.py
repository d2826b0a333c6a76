"""A batch's offsets: next_offsets (what the batch covers, per partition), oldest_timestamp and
Assignment.split_replays (fresh records, replays, others' partitions) give what the
record-by-record loops give, on generated batches (runs of one partition, interleaved
partitions, two topics, offsets out of order, records before, across and after the applied
offsets)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streams.assignment import Assignment
from streams.ownership import PartitionOwners
from streams.records import Record, next_offsets, oldest_timestamp

_tps = [("churn.events", 0), ("churn.events", 1), ("churn.events", 2), ("other", 0)]


def reference_next_offsets(records: list[Record]) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for rec in records:
        key = (rec.topic, rec.partition)
        if rec.offset >= out.get(key, 0):
            out[key] = rec.offset + 1
    return out


def reference_split(records: list[Record], applied: dict[tuple[str, int], int],
                    owned: set[tuple[str, int]] | None) -> tuple[list[Record], list[Record]]:
    fresh: list[Record] = []
    replayed: list[Record] = []
    for rec in records:
        tp = (rec.topic, rec.partition)
        if owned is not None and tp not in owned:
            continue
        (replayed if rec.offset < applied.get(tp, -1) else fresh).append(rec)
    return fresh, replayed


@st.composite
def batches(draw: st.DrawFn) -> list[Record]:
    records: list[Record] = []
    for _ in range(draw(st.integers(0, 6))):  # runs of one partition's records
        topic, partition = draw(st.sampled_from(_tps))
        start = draw(st.integers(0, 40))
        offsets = draw(st.lists(st.integers(start, start + 20), min_size=1, max_size=8)
                       if draw(st.booleans()) else
                       st.integers(1, 8).map(lambda n, s=start: list(range(s, s + n))))
        records += [Record(topic, partition, offset, b"") for offset in offsets]
    return records


@settings(max_examples=300, deadline=None)
@given(batches())
def test_next_offsets_match_the_record_by_record_loop(records: list[Record]) -> None:
    got = next_offsets(records)
    assert got == reference_next_offsets(records)
    assert list(got) == list(reference_next_offsets(records))  # the same order, too


@settings(max_examples=300, deadline=None)
@given(batches(), st.dictionaries(st.sampled_from(_tps), st.integers(0, 70), max_size=4),
       st.none() | st.sets(st.sampled_from(_tps)))
def test_split_replays_matches_the_record_by_record_loop(
        records: list[Record], applied: dict[tuple[str, int], int],
        owned: set[tuple[str, int]] | None) -> None:
    assignment = Assignment(None)
    assignment.applied = dict(applied)
    if owned is not None:
        assignment.owners = PartitionOwners(None, "owners", "member")
        assignment.owners.tokens = {tp: "token" for tp in owned}
    fresh, replayed = assignment.split_replays(records)
    assert (list(fresh), replayed) == reference_split(records, applied, owned)


def test_a_run_across_the_applied_offset_is_split_in_order() -> None:
    records = [Record("t", 0, offset, b"") for offset in (7, 3, 9, 4, 5)]
    assignment = Assignment(None)
    assignment.applied = {("t", 0): 5}
    fresh, replayed = assignment.split_replays(records)
    assert [r.offset for r in fresh] == [7, 9, 5] and [r.offset for r in replayed] == [3, 4]
    assert next_offsets(records) == {("t", 0): 10}


@settings(max_examples=200, deadline=None)
@given(st.lists(st.none() | st.integers(0, 2**45), max_size=12))
def test_oldest_timestamp_is_the_smallest_set_timestamp(stamps: list[int | None]) -> None:
    records = [Record("t", 0, i, b"", ts) for i, ts in enumerate(stamps)]
    set_ = [ts for ts in stamps if ts]  # 0 and None: the record has no timestamp
    assert oldest_timestamp(records) == (min(set_) if set_ else None)
