"""A Faust batch of many multi-event messages runs through the pipeline in bounded parts."""

from __future__ import annotations

from streams.records import Record, split_by_size


def test_split_by_size_keeps_order_and_bounds_each_run() -> None:
    recs = [Record("t", 0, i, b"x" * n) for i, n in enumerate([3, 3, 3, 10, 1, 1])]
    runs = split_by_size(recs, 6)
    assert [[r.offset for r in run] for run in runs] == [[0, 1], [2], [3], [4, 5]]
    assert split_by_size([], 6) == []
    assert [r for run in runs for r in run] == recs
