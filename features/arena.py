"""Keyed byte values in one circular log, found by an open-addressing index (numba).

The worker's state cache (``features.cache``) keeps up to millions of subscribers' values.
As Python objects (a dict entry, a key, a tuple and a ``bytes`` each) a batch's lookups and
writes touch several cold objects per subscriber, and every write allocates one value and
frees another. Here a value is one *record* in a log buffer, found through an index of
(key hash, record offset) pairs, and a batch's lookups, copies and writes are one kernel
call each.

Record layout (8-byte aligned)::

    int32 size | int32 key length | int32 value length | int32 side length
    int64 key hash | int64 sequence | key (UTF-32 code points) | value | side | padding

``sequence`` is the number of the batch that wrote the record (a pinned batch's records are
not evicted, see ``features.cache``); ``side`` is a second, small byte string kept with the value.

Writes append at the head. A record is live while the index points at it; a rewrite,
discard or eviction leaves it dead. To make room, the record at the tail is dropped if dead,
moved to the head if live, or evicted (removed from the index) while there are more live
records than ``keep`` and its batch is not pinned. So eviction goes roughly by age of the last
write, a moved record counting as written when moved. ``ValueArena`` (below) grows the log
so that at most 80 % of it is live (to 65 % when it grows): the log takes 1.25-1.55 times
the live records, and moving costs at most four bytes per byte written (a ``memcpy``, see
``churnwatch.core.memcopy``). A marker of size 0 means "continue at offset 0".
"""

from __future__ import annotations

import numpy as np
from numba import njit

from churnwatch.core.memcopy import copy
from features.kernel import string_hashes

__all__ = ["INITIAL_SLOTS", "ValueArena", "encode_keys", "interleave"]

INITIAL_SLOTS = 1024  # a new arena's index; it doubles when a batch could fill half of it
HDR = 32
# the log grows once a batch could leave more than FULL of it live, to where GROWN is
FULL, GROWN = 0.8, 0.65
# meta: head, tail, used (incl. wrap waste), live bytes, live records, the largest record
# kept (larger ones are not)
HEAD, TAIL, USED, LIVE, COUNT, RMAX = range(6)


def encode_keys(keys: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Keys as (UTF-32 code points, n + 1 offsets into them, 64-bit hashes)."""
    codes, lengths, hashes = string_hashes(keys)
    off = np.zeros(len(keys) + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    return codes.view(np.int32), off, hashes


@njit(cache=True, inline="always")
def _record_size(key_len, value_len, side_len):  # type: ignore[no-untyped-def]
    return (HDR + 4 * key_len + value_len + side_len + 7) & ~7


@njit(cache=True)
def _find(table, log32, codes, k0, k1, h):  # type: ignore[no-untyped-def]
    """Index slot of the key ``codes[k0:k1]`` (hash ``h``), or ``-1 - slot`` of the empty
    slot where it would go."""
    mask = len(table) - 1
    i = h & mask
    n = k1 - k0
    while True:
        o = table[i, 1]
        if o == 0:
            return -1 - i
        if table[i, 0] == h:
            o -= 1
            if log32[o // 4 + 1] == n:
                base = (o + HDR) // 4
                same = True
                for j in range(n):
                    if log32[base + j] != codes[k0 + j]:
                        same = False
                        break
                if same:
                    return i
        i = (i + 1) & mask


@njit(cache=True)
def _slot_of_record(table, log64, o):  # type: ignore[no-untyped-def]
    """Index slot pointing at the record at ``o`` (-1: none, the record is dead)."""
    mask = len(table) - 1
    i = log64[o // 8 + 2] & mask
    while table[i, 1] != 0:
        if table[i, 1] == o + 1:
            return i
        i = (i + 1) & mask
    return -1


@njit(cache=True)
def _delete(table, i):  # type: ignore[no-untyped-def]
    """Empty index slot ``i``, shifting back the entries probed past it (linear probing)."""
    mask = len(table) - 1
    j = i
    while True:
        table[i, 1] = 0
        while True:
            j = (j + 1) & mask
            if table[j, 1] == 0:
                return
            k = table[j, 0] & mask  # the entry's home slot
            if (i <= j and i < k <= j) or (i > j and (k > i or k <= j)):
                continue  # still reachable from its home
            break
        table[i, 0] = table[j, 0]
        table[i, 1] = table[j, 1]
        i = j


@njit(cache=True)
def _reserve(log, log32, meta, size):  # type: ignore[no-untyped-def]
    """Offset where a record of ``size`` bytes goes at the head (wrapping if the end is too
    short); counts it as used. The caller made sure there is room (see ``_make_room``)."""
    cap = len(log)
    head = meta[HEAD]
    if cap - head < size:
        if cap - head >= 4:
            log32[head // 4] = 0  # wrap marker
        meta[USED] += cap - head
        head = 0
    meta[HEAD] = head + size
    meta[USED] += size
    return head


@njit(cache=True)
def _pinned(seq, pinned):  # type: ignore[no-untyped-def]
    for p in pinned:
        if p == seq:
            return True
    return False


@njit(cache=True)
def _step_tail(table, log, log32, log64, meta, keep, pinned):  # type: ignore[no-untyped-def]
    """Advance the tail over one record: drop it if dead, evict it if there are more than
    ``keep`` live records and its batch is not ``pinned``, else move it to the head.
    Returns 1 if it moved a record."""
    cap, tail = len(log), meta[TAIL]
    if tail == cap or cap - tail < 4 or log32[tail // 4] == 0:  # the end, or a wrap marker
        meta[USED] -= cap - tail
        meta[TAIL] = 0
        return 0
    size = log32[tail // 4]
    slot = _slot_of_record(table, log64, tail)
    moved = 0
    if slot >= 0:
        if meta[COUNT] > keep and not _pinned(log64[tail // 8 + 3], pinned):
            _delete(table, slot)
            meta[COUNT] -= 1
            meta[LIVE] -= size
        else:
            to = _reserve(log, log32, meta, size)
            copy(log, to, log, tail, size)
            table[slot, 1] = to + 1
            moved = 1
    meta[TAIL] = tail + size
    meta[USED] -= size
    return moved


@njit(cache=True)
def _make_room(table, log, log32, log64, meta, size, keep, pinned):  # type: ignore[no-untyped-def]
    """Advance the tail until a record of ``size`` bytes fits with twice the largest record
    to spare. Records (live and dead) then never take more than ``len(log)`` minus that, so
    a record moved from the tail always fits at the head, after a wrap if need be."""
    while meta[USED] > 0 and len(log) - meta[USED] < size + 2 * meta[RMAX]:
        _step_tail(table, log, log32, log64, meta, keep, pinned)
    if meta[USED] == 0:
        meta[HEAD] = meta[TAIL] = 0


@njit(cache=True)
def arena_get(table, log, log32, codes, key_off, hashes):  # type: ignore[no-untyped-def]
    """Look up n keys: (found, each one's value length (0 if not found), the found values
    back to back in key order, each one's side length, the found sides back to back)."""
    n = len(hashes)
    where = np.full(n, -1, np.int64)
    lengths = np.zeros(n, np.int64)
    sides = np.zeros(n, np.int64)
    total = side_total = 0
    for i in range(n):
        slot = _find(table, log32, codes, key_off[i], key_off[i + 1], hashes[i])
        if slot >= 0:
            o = table[slot, 1] - 1
            where[i] = o
            lengths[i] = log32[o // 4 + 2]
            sides[i] = log32[o // 4 + 3]
            total += lengths[i]
            side_total += sides[i]
    values = np.empty(total, np.uint8)
    side = np.empty(side_total, np.uint8)
    pos = side_pos = 0
    for i in range(n):
        o = where[i]
        if o >= 0:
            start = o + HDR + 4 * log32[o // 4 + 1]
            copy(values, pos, log, start, lengths[i])
            pos += lengths[i]
            start += lengths[i]
            copy(side, side_pos, log, start, sides[i])
            side_pos += sides[i]
    return where >= 0, lengths, values, sides, side


@njit(cache=True)
def arena_put(table, log, log32, log64, meta, codes, key_off, hashes,  # type: ignore[no-untyped-def]
              raw, off, side, side_off, seq, keep, pinned):
    """Write n keys' values ``raw[off[i]:off[i + 1]]`` and sides ``side[side_off[i]:...]``
    as batch ``seq``; then evict down to ``keep`` live records (never those of the batches
    in ``pinned``). A record over ``meta[RMAX]`` bytes is not kept (nor the key's older one). The
    caller keeps the index at most half full and the log big enough (``ValueArena.put``)."""
    for i in range(len(hashes)):
        k0, k1 = key_off[i], key_off[i + 1]
        value_len, side_len = off[i + 1] - off[i], side_off[i + 1] - side_off[i]
        size = _record_size(k1 - k0, value_len, side_len)
        slot = _find(table, log32, codes, k0, k1, hashes[i])
        if slot >= 0:  # the old record is dead from now on
            meta[LIVE] -= log32[(table[slot, 1] - 1) // 4]
            meta[COUNT] -= 1
            _delete(table, slot)
        if size > meta[RMAX]:
            continue
        _make_room(table, log, log32, log64, meta, size, keep, pinned)
        o = _reserve(log, log32, meta, size)
        w = o // 4
        log32[w], log32[w + 1], log32[w + 2], log32[w + 3] = size, k1 - k0, value_len, side_len
        log64[o // 8 + 2] = hashes[i]
        log64[o // 8 + 3] = seq
        copy(log32, w + 8, codes, k0, k1 - k0)
        p = o + HDR + 4 * (k1 - k0)
        copy(log, p, raw, off[i], value_len)
        copy(log, p + value_len, side, side_off[i], side_len)
        slot = -1 - _find(table, log32, codes, k0, k1, hashes[i])
        table[slot, 0] = hashes[i]
        table[slot, 1] = o + 1
        meta[COUNT] += 1
        meta[LIVE] += size
    arena_evict(table, log, log32, log64, meta, keep, pinned)


@njit(cache=True)
def arena_evict(table, log, log32, log64, meta, keep, pinned):  # type: ignore[no-untyped-def]
    """Advance the tail until at most ``keep`` records are live; records of the batches in
    ``pinned`` are moved, never evicted (and the tail stops once every live record moved)."""
    moved = 0
    while meta[COUNT] > keep and meta[USED] > 0 and moved <= meta[COUNT]:
        moved += _step_tail(table, log, log32, log64, meta, keep, pinned)


@njit(cache=True)
def arena_discard(table, log32, log64, meta, codes, key_off, hashes):  # type: ignore[no-untyped-def]
    """Forget these keys (their records are dead)."""
    for i in range(len(hashes)):
        slot = _find(table, log32, codes, key_off[i], key_off[i + 1], hashes[i])
        if slot >= 0:
            meta[LIVE] -= log32[(table[slot, 1] - 1) // 4]
            meta[COUNT] -= 1
            _delete(table, slot)


@njit(cache=True)
def arena_compact(table, log, log32, log64, meta, new_log, new_table):  # type: ignore[no-untyped-def]
    """Copy the live records, oldest first, to the start of ``new_log`` and index them in
    ``new_table`` (both empty)."""
    mask = len(new_table) - 1
    cap, tail, used, pos = len(log), meta[TAIL], meta[USED], 0
    while used > 0:
        if tail == cap or cap - tail < 4 or log32[tail // 4] == 0:
            used -= cap - tail
            tail = 0
            continue
        size = log32[tail // 4]
        if _slot_of_record(table, log64, tail) >= 0:
            copy(new_log, pos, log, tail, size)
            h = log64[tail // 8 + 2]
            i = h & mask
            while new_table[i, 1] != 0:
                i = (i + 1) & mask
            new_table[i, 0] = h
            new_table[i, 1] = pos + 1
            pos += size
        tail += size
        used -= size
    meta[HEAD], meta[TAIL], meta[USED], meta[LIVE] = pos, 0, pos, pos


class ValueArena:
    """Key → (value, side) bytes, in one log buffer (see the module docstring).

    Batch operations take keys as :func:`encode_keys` gives them. Not thread-safe.
    """

    def __init__(self, log_bytes: int = 1 << 20, max_record: int = 1 << 16) -> None:
        if max_record < 64 or max_record % 8:
            raise ValueError("max_record must be a multiple of 8, at least 64")
        self._meta = np.zeros(6, np.int64)
        self._meta[RMAX] = self.max_record = max_record
        self._set(np.zeros((INITIAL_SLOTS, 2), np.int64),
                  np.empty((max(log_bytes, 8 * max_record) + 7) & ~7, np.uint8))

    def _set(self, table: np.ndarray, log: np.ndarray) -> None:
        self._table, self._log = table, log
        self._log32, self._log64 = log.view(np.int32), log.view(np.int64)

    def __len__(self) -> int:
        return int(self._meta[COUNT])

    @property
    def live_bytes(self) -> int:
        """Bytes of the live records (headers and keys included)."""
        return int(self._meta[LIVE])

    @property
    def log_bytes(self) -> int:
        return len(self._log)

    @property
    def memory_bytes(self) -> int:
        """The log's and the index's bytes."""
        return self._log.nbytes + self._table.nbytes

    def get(self, keys: tuple[np.ndarray, np.ndarray, np.ndarray]) -> tuple[
            np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(found, value lengths, found values joined, side lengths, found sides joined)."""
        return arena_get(self._table, self._log, self._log32, *keys)

    def put(self, keys: tuple[np.ndarray, np.ndarray, np.ndarray], raw: np.ndarray,
            off: np.ndarray, side: np.ndarray, side_off: np.ndarray, seq: int, keep: int,
            pinned: np.ndarray) -> None:
        """Write each key's value and side as batch ``seq`` (see :func:`arena_put`); grows
        the index and the log first if the batch could leave either too full."""
        codes, key_off, hashes = keys
        n = len(hashes)
        if 2 * (len(self) + n) > len(self._table):
            self._resize(table_slots=2 * (len(self) + n))
        need = int(off[-1]) + int(side_off[-1]) + n * (HDR + 7) + 4 * int(key_off[-1])
        spare = 4 * self.max_record
        if self.live_bytes + need > FULL * (len(self._log) - spare):
            self._resize(log_bytes=int((self.live_bytes + need) / GROWN) + spare)
        arena_put(self._table, self._log, self._log32, self._log64, self._meta, codes,
                  key_off, hashes, raw, off, side, side_off, seq, keep, pinned)

    def evict(self, keep: int, pinned: np.ndarray) -> None:
        """Evict down to ``keep`` live records (none of the batches in ``pinned``)."""
        arena_evict(self._table, self._log, self._log32, self._log64, self._meta, keep, pinned)

    def discard(self, keys: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
        arena_discard(self._table, self._log32, self._log64, self._meta, *keys)

    def clear(self) -> None:
        self._table[:] = 0
        self._meta[:RMAX] = 0

    def _resize(self, table_slots: int = 0, log_bytes: int = 0) -> None:
        """Copy the live records into a fresh log (and index) of at least these sizes."""
        slots = len(self._table)
        while slots < max(table_slots, 2 * len(self)):
            slots *= 2
        log = np.empty((max(log_bytes, len(self._log)) + 7) & ~7, np.uint8)
        table = np.zeros((slots, 2), np.int64)
        arena_compact(self._table, self._log, self._log32, self._log64, self._meta, log, table)
        self._set(table, log)


@njit(cache=True)
def interleave(found, lengths, values, other, other_lengths):  # type: ignore[no-untyped-def]
    """Values in key order, as one buffer and n + 1 offsets: key i's is the next of
    ``values`` (``lengths[i]`` bytes) where ``found[i]``, else the next of ``other``
    (``other_lengths``, in order)."""
    n = len(found)
    off = np.zeros(n + 1, np.int64)
    j = 0
    for i in range(n):
        if found[i]:
            off[i + 1] = off[i] + lengths[i]
        else:
            off[i + 1] = off[i] + other_lengths[j]
            j += 1
    out = np.empty(off[n], np.uint8)
    p = q = j = 0
    for i in range(n):
        size = off[i + 1] - off[i]
        if found[i]:
            copy(out, off[i], values, p, size)
            p += size
        else:
            copy(out, off[i], other, q, size)
            q += size
    return out, off
