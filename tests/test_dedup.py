"""The learner's dedup window (online_models.dedup): exact, remembers every id at least the
window, fixed memory, early rotation at capacity, persistence. No Redis."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from online_models.dedup import DedupError, DedupWindow, fingerprints, table_size


class Reference:
    """The same two-generation rules over plain sets of ids."""

    def __init__(self, window_ms: int, capacity: int) -> None:
        self.window_ms, self.capacity = max(1, window_ms), capacity
        self.current: set[str] = set()
        self.older: set[str] = set()
        self.start: int | None = None

    def admit(self, ids: list[str], ms: list[int]) -> list[bool]:
        out = []
        for i, t in zip(ids, ms):
            if self.start is None:
                self.start = t
            if t - self.start >= self.window_ms:
                self._rotate(t)
            if i in self.current or i in self.older:
                out.append(False)
                continue
            if len(self.current) >= self.capacity:
                self._rotate(t)
            self.current.add(i)
            out.append(True)
        return out

    def _rotate(self, t: int) -> None:
        self.older, self.current, self.start = self.current, set(), t


# pages of (id number, ms since the previous example); few ids so that repeats are common
_pages = st.lists(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 700)),
                           min_size=0, max_size=30), min_size=1, max_size=12)


def _timed(pages: list[list[tuple[int, int]]]) -> list[tuple[list[str], list[int]]]:
    t, out = 1_700_000_000_000, []
    for page in pages:
        ids, ms = [], []
        for n, dt in page:
            t += dt
            ids.append(f"+4477{n:08d}/{n * 7}")
            ms.append(t)
        out.append((ids, ms))
    return out


@settings(max_examples=150, deadline=None)
@given(_pages, st.sampled_from([0, 1000, 5000]), st.sampled_from([4, 16, 1024]))
def test_matches_the_reference_and_remembers_every_id_for_the_window(
        pages: list[list[tuple[int, int]]], window_ms: int, capacity: int) -> None:
    window, ref = DedupWindow(window_ms, capacity), Reference(window_ms, capacity)
    learned: dict[str, int] = {}  # id → stream ms it was (last) learned
    for ids, ms in _timed(pages):
        new = window.admit_ids(ids, ms).tolist()
        assert new == ref.admit(ids, ms)
        for i, t, fresh in zip(ids, ms, new):
            if window.early_rotations == 0 and i in learned and t - learned[i] <= window_ms:
                assert not fresh, "forgotten within the window"
            if fresh:
                learned[i] = t
        assert len(window) == len(ref.current) + len(ref.older)
    assert window.early_rotations == 0 or capacity < 41


@settings(max_examples=60, deadline=None)
@given(_pages, _pages)
def test_a_decoded_window_answers_as_the_original(before: list[list[tuple[int, int]]],
                                                  after: list[list[tuple[int, int]]]) -> None:
    original = DedupWindow(3000, 16)
    for ids, ms in _timed(before):
        original.admit_ids(ids, ms)
    copy = DedupWindow.decode(original.encode(), 3000, 16)
    assert len(copy) == len(original)
    last = max((m for _, ms in _timed(before) for m in ms), default=0)
    for ids, ms in _timed(after):
        ms = [m + last for m in ms]
        assert copy.admit_ids(ids, ms).tolist() == original.admit_ids(ids, ms).tolist()


def test_rotation_by_time_keeps_ids_at_least_the_window() -> None:
    window = DedupWindow(60_000, 1000)
    assert window.admit_ids(["a"], [0]).tolist() == [True]
    assert window.admit_ids(["b", "a"], [59_999, 59_999]).tolist() == [True, False]
    assert window.admit_ids(["c", "a", "b"], [60_000, 60_000, 60_000]).tolist() == [
        True, False, False]  # rotated: a and b now in the older generation
    assert window.admit_ids(["a", "b"], [119_999, 119_999]).tolist() == [False, False]
    assert window.admit_ids(["a", "b", "c"], [120_000] * 3).tolist() == [True, True, False]
    assert window.early_rotations == 0


def test_a_full_generation_rotates_early_and_says_so() -> None:
    window = DedupWindow(3_600_000, 8)
    ids = [f"id{n}" for n in range(20)]
    new = window.admit_ids(ids + ids[-8:], list(range(0, 20_000, 1000)) + [20_000] * 8)
    assert new.tolist() == [True] * 20 + [False] * 8  # the last 8+ are remembered
    assert window.early_rotations == 2 and window.shortest_span_ms == 8000
    assert "id0" not in window and "id19" in window and "id8" in window
    assert window.nbytes == 2 * table_size(8) * 8  # memory fixed by the capacity


def test_repeats_within_a_page_and_fixed_memory() -> None:
    window = DedupWindow(1000, 262_144)
    assert table_size(262_144) == 524_288 and window.nbytes == 8 << 20
    fps = fingerprints([f"s{n % 1000}" for n in range(5000)])
    new = window.admit(fps, np.zeros(fps.size, dtype=np.int64))
    assert new.sum() == 1000 and new[:1000].all()
    assert len(window) == 1000 and window.nbytes == 8 << 20


def test_fingerprints_are_stable_and_never_empty() -> None:
    # blake2b, not Python's salted hash(): the same in every process and release
    assert fingerprints(["+447700900001/1700000000000"]).tolist() == [
        int.from_bytes(__import__("hashlib").blake2b(
            b"+447700900001/1700000000000", digest_size=8).digest(), "little", signed=True)]
    assert (fingerprints([str(n) for n in range(10_000)]) != 0).all()
    assert fingerprints([]).size == 0


def test_a_window_stored_larger_than_the_capacity_keeps_every_id() -> None:
    big = DedupWindow(3_600_000, 4096)
    ids = [f"id{n}" for n in range(3000)]
    big.admit_ids(ids, [0] * 3000)
    small = DedupWindow.decode(big.encode(), 3_600_000, 1024)
    assert all(i in small for i in ids) and len(small) == 3000
    assert small.admit_ids(["new1", "new2", "id5"], [1, 1, 1]).tolist() == [True, True, False]
    assert small.early_rotations == 1  # the oversized generation rotated at once
    assert small.nbytes < big.nbytes + table_size(1024) * 8


def test_an_unreadable_window_is_a_clear_error() -> None:
    with pytest.raises(DedupError, match="dedup window"):
        DedupWindow.decode(b"\x93garbage", 1000)
    import msgspec
    with pytest.raises(DedupError, match="format"):
        DedupWindow.decode(msgspec.msgpack.encode(["dedup/9", None, None, b"", b""]), 1000)
