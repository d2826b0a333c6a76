"""The per-subscriber state blob stored in Redis, and its batch codec (numba).

Layout, version 1: byte ``0x01``, then zigzag LEB128 varints (small numbers take one byte)::

    clock ts, clock month, today − first day, presence bits (0 last spend day, 1 last login
    day, 2 last complaint day, 3 last usage day, 4 latest plan, 5 previous plan, 6 profile,
    7 tenure), then each present one: today − day (×4), clock − ts and fee cents (×2 plans),
    clock − profile ts, clock month − tenure month and the tenure as 8 raw bytes (float64)
    activity days within 35 days:   count, then (today − day, logins, data, voice) each
    spend days within 30 days:      count, then (today − day, spends, cents) each
    complaint days within 30 days:  count, then (today − day, 4 category counts) each
    spend months, current and 5 before: count, then (clock month − month, cents) each
    ids seen within the lateness:   count, then (8 raw bytes of the id hash, clock − ts) each

Only non-empty buckets inside their window are written, so a blob is what the windows can
still see and nothing more. The stored value is the blob, then its tail: an optional
extension frame and the profile attributes (msgpack), see ``features.extension``; the codec
carries the tail over unchanged. Python moves whole batches: values are joined into one
buffer with offsets, both ways.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from features.extension import MARK
from features.kernel import (AT, C_SIZE, C_TAG, C_VAL, D_SIZE, D_TAG, D_VAL, DAY_MS, F0, F1,
                             FD, LC, LL, LS, LU, M_SIZE, M_TAG, M_VAL, MM, MX, NONE, S_SIZE,
                             S_TAG, S_VAL, T0, T1, TM, empty_states)

VERSION = 1
EMPTY_ATTRS = 0x80  # msgpack's empty map
_LAST_DAYS = (LS, LL, LC, LU)


@njit(cache=True)
def _put(buf, pos, v):  # type: ignore[no-untyped-def]
    z = (v << 1) ^ (v >> 63)
    while z >= 128:
        buf[pos] = (z & 127) | 128
        z >>= 7
        pos += 1
    buf[pos] = z
    return pos + 1


@njit(cache=True)
def _uget(buf, pos):  # type: ignore[no-untyped-def]
    """An unsigned LEB128 varint at ``pos``: (value, next position)."""
    v = 0
    shift = 0
    while True:
        byte = np.int64(buf[pos])
        pos += 1
        v |= (byte & 127) << shift
        if byte < 128:
            break
        shift += 7
    return v, pos


@njit(cache=True)
def _get(buf, pos):  # type: ignore[no-untyped-def]
    z, pos = _uget(buf, pos)
    return (z >> 1) ^ -(z & 1), pos


@njit(cache=True)
def _put8(buf, pos, v):  # type: ignore[no-untyped-def]
    for k in range(8):
        buf[pos + k] = (v >> (8 * k)) & 255
    return pos + 8


@njit(cache=True)
def _get8(buf, pos):  # type: ignore[no-untyped-def]
    v = 0
    for k in range(8):
        v |= np.int64(buf[pos + k]) << (8 * k)
    return v, pos + 8


@njit(cache=True)
def _nonzero(st, p, width):  # type: ignore[no-untyped-def]
    for j in range(width):
        if st[p + j] != 0:
            return True
    return False


@njit(cache=True)
def _put_ring(buf, pos, st, tag0, val0,  # type: ignore[no-untyped-def]
              width, size, now, window):
    count_pos = pos
    pos += 1  # at most 35 entries: the count is one byte
    n = 0
    for s in range(size):
        age = now - st[tag0 + s]
        if 0 <= age < window and _nonzero(st, val0 + width * s, width):
            pos = _put(buf, pos, age)
            for j in range(width):
                pos = _put(buf, pos, st[val0 + width * s + j])
            n += 1
    buf[count_pos] = n
    return pos


@njit(cache=True)
def _get_ring(buf, pos, st, tag0, val0, width, size, now):  # type: ignore[no-untyped-def]
    n = np.int64(buf[pos])
    pos += 1
    for _ in range(n):
        age, pos = _get(buf, pos)
        key = now - age
        s = key % size
        st[tag0 + s] = key
        for j in range(width):
            st[val0 + width * s + j], pos = _get(buf, pos)
    return pos


@njit(cache=True)
def extension_at(src, pos, end):  # type: ignore[no-untyped-def]
    """(start, end) of the extension body in a tail ``src[pos:end]`` (``features.extension``);
    (pos, pos) if the tail has no extension frame."""
    if pos < end and src[pos] == MARK:
        size, start = _uget(src, pos + 1)
        return start, start + size
    return pos, pos


@njit(cache=True)
def attrs_start(src, pos, end):  # type: ignore[no-untyped-def]
    """Where the attributes start in a tail ``src[pos:end]`` (after an extension frame)."""
    return extension_at(src, pos, end)[1]


@njit(cache=True)
def encode_head(buf, pos, st, tenure_bits):  # type: ignore[no-untyped-def]
    """Write the blob of the known state ``st`` at ``pos``, up to its seen ids (the caller
    writes their count and entries, relative to the clock); returns the new position."""
    mx, mm = st[MX], st[MM]
    today = mx // DAY_MS
    buf[pos] = VERSION
    pos = _put(buf, pos + 1, mx)
    pos = _put(buf, pos, mm)
    pos = _put(buf, pos, today - st[FD])
    flags = 0
    for k in range(4):
        if st[_LAST_DAYS[k]] != NONE:
            flags |= 1 << k
    if st[T1] != NONE:
        flags |= 16
    if st[T0] != NONE:
        flags |= 32
    if st[AT] != NONE:
        flags |= 64
    if st[TM] != NONE:
        flags |= 128
    pos = _put(buf, pos, flags)
    for k in range(4):
        if flags & (1 << k):
            pos = _put(buf, pos, today - st[_LAST_DAYS[k]])
    if flags & 16:
        pos = _put(buf, _put(buf, pos, mx - st[T1]), st[F1])
    if flags & 32:
        pos = _put(buf, _put(buf, pos, mx - st[T0]), st[F0])
    if flags & 64:
        pos = _put(buf, pos, mx - st[AT])
    if flags & 128:
        pos = _put8(buf, _put(buf, pos, mm - st[TM]), tenure_bits)
    pos = _put_ring(buf, pos, st, D_TAG, D_VAL, 3, D_SIZE, today, 35)
    pos = _put_ring(buf, pos, st, S_TAG, S_VAL, 2, S_SIZE, today, 30)
    pos = _put_ring(buf, pos, st, C_TAG, C_VAL, 4, C_SIZE, today, 30)
    return _put_ring(buf, pos, st, M_TAG, M_VAL, 1, M_SIZE, mm, 6)


@njit(cache=True)
def put_seen(buf, pos, h, clock_minus_ts):  # type: ignore[no-untyped-def]
    """Write one seen id (its hash, and its age against the clock)."""
    return _put(buf, _put8(buf, pos, h), clock_minus_ts)


@njit(cache=True)
def put_count(buf, pos, count):  # type: ignore[no-untyped-def]
    return _put(buf, pos, count)


@njit(cache=True)
def decode_head(buf, pos, st):  # type: ignore[no-untyped-def]
    """Read a blob's state into the empty state ``st``, up to its seen ids; returns (their
    count, the position of the first, the tenure bits). ``buf[pos]`` must be VERSION."""
    mx, pos = _get(buf, pos + 1)
    mm, pos = _get(buf, pos)
    today = mx // DAY_MS
    st[MX] = mx
    st[MM] = mm
    age, pos = _get(buf, pos)
    st[FD] = today - age
    flags, pos = _get(buf, pos)
    for k in range(4):
        if flags & (1 << k):
            age, pos = _get(buf, pos)
            st[_LAST_DAYS[k]] = today - age
    if flags & 16:
        age, pos = _get(buf, pos)
        st[T1] = mx - age
        st[F1], pos = _get(buf, pos)
    if flags & 32:
        age, pos = _get(buf, pos)
        st[T0] = mx - age
        st[F0], pos = _get(buf, pos)
    if flags & 64:
        age, pos = _get(buf, pos)
        st[AT] = mx - age
    tenure_bits = 0
    if flags & 128:
        age, pos = _get(buf, pos)
        st[TM] = mm - age
        tenure_bits, pos = _get8(buf, pos)
    pos = _get_ring(buf, pos, st, D_TAG, D_VAL, 3, D_SIZE, today)
    pos = _get_ring(buf, pos, st, S_TAG, S_VAL, 2, S_SIZE, today)
    pos = _get_ring(buf, pos, st, C_TAG, C_VAL, 4, C_SIZE, today)
    pos = _get_ring(buf, pos, st, M_TAG, M_VAL, 1, M_SIZE, mm)
    count, pos = _get(buf, pos)
    return count, pos, tenure_bits


@njit(cache=True)
def get_seen(buf, pos, mx):  # type: ignore[no-untyped-def]
    """One seen id: (hash, event time, next position)."""
    h, pos = _get8(buf, pos)
    age, pos = _get(buf, pos)
    return h, mx - age, pos


@njit(cache=True)
def _decode(buf, off, states, tenure_bits, attrs_at):  # type: ignore[no-untyped-def]
    n = len(off) - 1
    seen_count = np.zeros(n + 1, np.int64)
    seen_hash = np.empty(len(buf) // 9 + 1, np.int64)
    seen_ts = np.empty(len(buf) // 9 + 1, np.int64)
    m = 0
    for i in range(n):
        pos = off[i]
        if pos == off[i + 1]:
            attrs_at[i] = pos
            continue
        if buf[pos] != VERSION:
            return i, seen_hash[:0], seen_ts[:0], seen_count
        count, pos, tenure_bits[i] = decode_head(buf, pos, states[i])
        for _ in range(count):
            seen_hash[m], seen_ts[m], pos = get_seen(buf, pos, states[i, MX])
            m += 1
        seen_count[i + 1] = count
        attrs_at[i] = pos
    return -1, seen_hash[:m], seen_ts[:m], np.cumsum(seen_count)


def decode_states(joined: bytes, lengths: np.ndarray) -> tuple[Any, ...]:
    """Concatenated values and their lengths (0: unknown subscriber) → (states, tenure, seen
    hashes, seen event times, seen offsets, where each value's tail starts, the ``n + 1``
    value offsets). The tail (extension frame, attributes msgpack) of value i is
    ``joined[tail_at[i]:off[i + 1]]``. Raises ValueError on a blob of another version."""
    n = len(lengths)
    off = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    buf = np.frombuffer(joined, np.uint8)
    states, tenure = empty_states(n)
    attrs_at = np.empty(n, np.int64)
    bad, seen_hash, seen_ts, seen_off = _decode(buf, off, states, tenure.view(np.int64),
                                                attrs_at)
    if bad >= 0:
        raise ValueError(f"state blob of version {buf[off[bad]]}, expected {VERSION}")
    return states, tenure, seen_hash, seen_ts, seen_off, attrs_at, off
