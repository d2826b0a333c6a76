"""The learner's dedup window: which example ids it learned recently, in fixed memory.

Ids are kept as stable 64-bit fingerprints (blake2b; 0 marks an empty slot) in two
*generations*, each a preallocated open-addressing table (linear probing, a power-of-two
size, at most half full) searched and filled by numba. New ids go into the current
generation; a lookup checks both. The window *rotates* — drops the older generation, the
current one becomes the older, a fresh current one starts — when the current generation has
spanned ``window_ms`` of stream time, so an id is remembered for at least ``window_ms`` after
it was learned (and at most twice that). A generation that reaches ``capacity`` ids rotates
early: the window is then shorter than configured (:attr:`DedupWindow.early_rotations`,
:attr:`DedupWindow.shortest_span_ms`). Exact up to a fingerprint collision (~n²/2⁶⁵ for n
ids, ~7·10⁻⁹ at 2 × 262,144).

Memory is ``2 × next_pow2(2 × capacity) × 8`` bytes, touched at construction (8 MiB at the
default 262,144 ids per generation). Persisted form (:meth:`encode`): each generation's start
and its occupied fingerprints, little-endian int64, in msgpack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b

import msgspec
import numpy as np
from numba import njit

from churnwatch.core.errors import ChurnwatchError

_FORMAT = "dedup/1"


class DedupError(ChurnwatchError):
    """A stored dedup window that cannot be read."""


def fingerprints(ids: Sequence[str]) -> np.ndarray:
    """Stable 64-bit fingerprints of ``ids`` (int64, never 0: 0 marks an empty slot)."""
    raw = b"".join(blake2b(i.encode(), digest_size=8).digest() for i in ids)
    out = np.frombuffer(raw, dtype="<i8").astype(np.int64)
    out[out == 0] = 1
    return out


def table_size(capacity: int) -> int:
    """Slots of a table holding ``capacity`` ids at a load of at most one half."""
    return 1 << max(4, (2 * capacity - 1).bit_length())


def _empty_table(slots: int) -> np.ndarray:
    table = np.empty(slots, dtype=np.int64)
    table.fill(0)  # writes every page: the memory is resident now, not as the table fills
    return table


@njit(cache=True)
def _slot(table, fp):  # type: ignore[no-untyped-def]
    """Index of ``fp`` in ``table``, or of the empty slot where it belongs."""
    mask = table.size - 1
    i = fp & mask
    while True:
        v = table[i]
        if v == fp or v == 0:
            return i
        i = (i + 1) & mask


@njit(cache=True)
def _fill(table, fps):  # type: ignore[no-untyped-def]
    """Insert ``fps`` (distinct, table large enough); returns how many were inserted."""
    n = 0
    for fp in fps:
        j = _slot(table, fp)
        if table[j] == 0:
            table[j] = fp
            n += 1
    return n


@njit(cache=True)
def _admit(current, older, fps, ms, new, i, count,  # type: ignore[no-untyped-def]
           capacity, start_ms, window_ms):
    """Mark ``new[k]`` and insert each ``fps[k]`` (from ``i``) seen in neither table. Stops
    at the first k whose ``ms[k]`` is ``window_ms`` past ``start_ms`` or whose id is new
    with ``count`` at ``capacity``; returns (k, count). k == fps.size: all done."""
    while i < fps.size:
        if ms[i] - start_ms >= window_ms:
            return i, count
        fp = fps[i]
        j = _slot(current, fp)
        if current[j] != fp and older[_slot(older, fp)] != fp:
            if count >= capacity:
                return i, count
            current[j] = fp
            count += 1
            new[i] = True
        i += 1
    return i, count


@dataclass
class Generation:
    """One table: its fingerprints, how many, and the stream ms it started at (None: empty)."""

    table: np.ndarray
    count: int = 0
    start_ms: int | None = None

    def occupied(self) -> np.ndarray:
        return self.table[self.table != 0]


def warm_up() -> None:
    """Compile the window's kernel (or load it from numba's cache) before the learner's first
    step: compiled there, it would hold the interpreter for its whole compile time."""
    DedupWindow(1, 1).admit(np.ones(1, np.int64), np.zeros(1, np.int64))


class DedupWindow:
    """Example ids learned within (at least) the last ``window_ms`` of stream time."""

    def __init__(self, window_ms: int, capacity: int = 262_144) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.window_ms = max(1, window_ms)  # 0: remember ids of the same stream ms only
        self.capacity = capacity
        self.slots = table_size(capacity)
        self.current = Generation(_empty_table(self.slots))
        self.older = Generation(_empty_table(self.slots))
        self.early_rotations = 0  # rotations forced by capacity before the window was spanned
        self.shortest_span_ms: int | None = None  # stream time the shortest of them spanned

    @property
    def nbytes(self) -> int:
        return self.current.table.nbytes + self.older.table.nbytes

    def __len__(self) -> int:
        return self.current.count + self.older.count

    def __contains__(self, example_id: str) -> bool:
        fp = fingerprints([example_id])[0]
        return any(g.table[_slot(g.table, fp)] == fp for g in (self.current, self.older))

    def admit(self, fps: np.ndarray, ms: np.ndarray) -> np.ndarray:
        """Which of ``fps`` (one page, stream order; ``ms``: each one's stream entry ms,
        non-decreasing) are new; those are remembered from now on. A repeat within the page
        is not new."""
        fps = np.ascontiguousarray(fps, dtype=np.int64)
        ms = np.ascontiguousarray(ms, dtype=np.int64)
        new = np.zeros(fps.size, dtype=np.bool_)
        i = 0
        while i < fps.size:
            cur = self.current
            if cur.start_ms is None:
                cur.start_ms = int(ms[i])
            i, cur.count = _admit(cur.table, self.older.table, fps, ms, new, i, cur.count,
                                  self.capacity, cur.start_ms, self.window_ms)
            if i < fps.size:
                self._rotate(int(ms[i]))
        return new

    def admit_ids(self, ids: Sequence[str], ms: Sequence[int] | np.ndarray) -> np.ndarray:
        """:meth:`admit` by example id."""
        return self.admit(fingerprints(ids), np.asarray(ms, dtype=np.int64))

    def _rotate(self, now_ms: int) -> None:
        start = self.current.start_ms
        span = 0 if start is None else now_ms - start
        if span < self.window_ms:
            self.early_rotations += 1
            if self.shortest_span_ms is None or span < self.shortest_span_ms:
                self.shortest_span_ms = span
        table = self.older.table
        if table.size == self.slots:
            table.fill(0)
        else:  # restored larger than this capacity allows
            table = _empty_table(self.slots)
        self.older = self.current
        self.current = Generation(table, 0, now_ms)

    # ---- storage ---------------------------------------------------------------------
    def encode(self) -> bytes:
        """Both generations: start ms and occupied fingerprints (8 bytes per id)."""
        return _encoder.encode([
            _FORMAT, self.current.start_ms, self.older.start_ms,
            self.current.occupied().astype("<i8").tobytes(),
            self.older.occupied().astype("<i8").tobytes()])

    @classmethod
    def decode(cls, blob: bytes, window_ms: int, capacity: int = 262_144) -> DedupWindow:
        """A window stored by :meth:`encode`, with this ``window_ms`` and ``capacity``. A
        generation stored with more ids than ``capacity`` keeps them all (a larger table)
        and makes the next new id rotate."""
        try:
            fmt, cur_start, old_start, cur, old = _decoder.decode(blob)
        except (msgspec.DecodeError, ValueError, TypeError) as exc:
            raise DedupError(f"unreadable learner dedup window: {exc}") from exc
        if fmt != _FORMAT:
            raise DedupError(f"unknown learner dedup window format {fmt!r}")
        window = cls(window_ms, capacity)
        window.current = window._loaded(cur, cur_start)
        window.older = window._loaded(old, old_start)
        return window

    def _loaded(self, raw: bytes, start_ms: int | None) -> Generation:
        fps = np.frombuffer(raw, dtype="<i8").astype(np.int64)
        slots = max(self.slots, table_size(fps.size))
        table = _empty_table(slots)
        return Generation(table, int(_fill(table, fps)), start_ms)


_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(tuple[str, int | None, int | None, bytes, bytes])
