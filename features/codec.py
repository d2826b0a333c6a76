"""The per-subscriber state blob stored in Redis, and its batch codec (numba).

Layout, version 3: byte ``0x03``, then LEB128 varints (zigzag for signed values: small
numbers take one byte)::

    clock ts, clock month, today − first day, presence bits (0 last spend day, 1 last login
    day, 2 last complaint day, 3 last usage day, 4 latest plan, 5 previous plan, 6 profile,
    7 tenure), then each present one: today − day (×4), clock − ts and fee cents (×2 plans),
    clock − profile ts, clock month − tenure month and the tenure as 8 raw bytes (float64)
    usage days within 35 days:      which are kept, as bits in a varint (bit a: day
                                    today − a), then (data, voice) of each, today first
    spend months, current and 5 before: the same bits (bit a: clock month − a), then the
                                    cents of each, the current month first
    logins within 35 days:          count, then newest first each one's gap in ms to the
                                    one before (to the clock for the first) as 4 raw bytes
    spends within 30 days:          count, then (gap as 4 raw bytes, cents) each
    complaints within 30 days:      count, then gap × 4 + category each (a varint)
    ids seen within the lateness:   count, then (8 raw bytes of the id hash, clock − ts) each

"Within" a window means still countable from now on: a login is kept while clock − ts is
below 35 days, a spend or complaint below 30 days, a usage day while today − day is below 35.
Only non-empty buckets are written, so a blob is what the windows can still see and nothing
more. Each counted event keeps its millisecond event time: a window boundary can fall inside
any day, so every event it may still cut needs its time. (A gap is below 35 days, so 4 bytes
hold it; as raw bytes it reads faster than a varint and is no longer for gaps of 35 minutes
to 3 days, the usual ones.)

Version 2 (``0x02``) wrote each day and month bucket with its age as a varint after a count
byte, in ring order: a byte per kept bucket where the bits take at most 5 bytes in all (~30
bytes more for a subscriber with usage every day). It is still read.

Version 1 (``0x01``, written before the windows were exact) differs only in the middle: the
usage days carried logins too, as (today − day, logins, data, voice) within 35 days, then came
spend days (today − day, spends, cents) and complaint days (today − day, 4 category counts)
within 30 days, then the spend months, and no event list. It is still read: each counted
event of a day bucket becomes an entry at that day's first millisecond (00:00:00.000 UTC),
which keeps every such event in exactly the windows the day-granular version counted it in
(``(now − 7d, now]`` holds 00:00 of day D for every now before day D + 7, and so on;
``features.codec_v1``); events applied after the upgrade are exact.

The stored value is the blob, then its tail (an extension frame, the profile attributes:
``features.extension``), carried over unchanged. Batches move as one buffer with offsets.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numba import njit

from features.codec_rings import get_bits_ring, get_ring_v2, put_bits_ring
from features.codec_v1 import get_v1_buckets
from features.extension import MARK
from features.kernel import (
    AT,
    D_SIZE,
    D_TAG,
    D_VAL,
    DAY_MS,
    E_LOGIN,
    E_SPEND,
    F0,
    F1,
    FD,
    LC,
    LL,
    LS,
    LU,
    M_SIZE,
    M_TAG,
    M_VAL,
    MM,
    MX,
    NONE,
    T0,
    T1,
    TM,
    W30_MS,
    W35_MS,
    empty_states,
    group_of,
    reserve,
    settle,
)
from features.varint import (
    get4,
    get8,
    get_signed,
    get_unsigned,
    put4,
    put8,
    put_signed,
    put_unsigned,
)

VERSION = 3
VERSION_2 = 2  # read, never written
VERSION_1 = 1  # read, never written
EMPTY_ATTRS = 0x80  # msgpack's empty map
_LAST_DAYS = (LS, LL, LC, LU)
MAX_HEAD = 141 + (1 + 30 * D_SIZE) + (1 + 20 * M_SIZE) + 30  # most bytes before the entries


@njit(cache=True)
def extension_at(src, pos, end):  # type: ignore[no-untyped-def]
    """(start, end) of the extension body in a tail ``src[pos:end]`` (``features.extension``);
    (pos, pos) if the tail has no extension frame."""
    if pos < end and src[pos] == MARK:
        size, start = get_unsigned(src, pos + 1)
        return start, start + size
    return pos, pos


@njit(cache=True)
def attrs_start(src, pos, end):  # type: ignore[no-untyped-def]
    """Where the attributes start in a tail ``src[pos:end]`` (after an extension frame)."""
    return extension_at(src, pos, end)[1]


# the counted events' groups, in the order they are kept and stored (kernel.group_of)
_LOGINS, _SPENDS, _COMPLAINTS = 0, 1, 2


@njit(cache=True)
def _put_group(buf, pos, e_ts, e_code, e_amt, lo, hi,  # type: ignore[no-untyped-def]
               group, clock, horizon):
    """Write the entries ``lo:hi`` (one group, sorted by time) newer than ``horizon``: their
    count, then newest first each one's gap to the one before (``clock`` for the first),
    with its cents (spends) or category (complaints, ``gap × 4 + category``)."""
    first = lo
    while first < hi and e_ts[first] <= horizon:
        first += 1
    pos = put_unsigned(buf, pos, hi - first)
    before = clock
    for j in range(hi - 1, first - 1, -1):
        gap = before - e_ts[j]
        before = e_ts[j]
        if group == _COMPLAINTS:
            pos = put_unsigned(buf, pos, gap * 4 + e_code[j])
        else:
            pos = put4(buf, pos, gap)
            if group == _SPENDS:
                pos = put_signed(buf, pos, e_amt[j])
    return pos


@njit(cache=True)
def encode_head(buf, pos, st, tenure_bits,  # type: ignore[no-untyped-def]
                e_ts, e_code, e_amt, n):
    """Write the blob of the known state ``st`` with its counted events ``0:n`` of the entry
    arrays (in order of (group, event time), as :func:`decode_head` and ``apply_event`` keep
    them) at ``pos``, up to its seen ids (the caller writes their count and entries,
    relative to the clock); returns the new position. At most ``MAX_HEAD + 20 * n`` bytes."""
    mx, mm = st[MX], st[MM]
    today = mx // DAY_MS
    buf[pos] = VERSION
    pos = put_signed(buf, pos + 1, mx)
    pos = put_signed(buf, pos, mm)
    pos = put_signed(buf, pos, today - st[FD])
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
    pos = put_signed(buf, pos, flags)
    for k in range(4):
        if flags & (1 << k):
            pos = put_signed(buf, pos, today - st[_LAST_DAYS[k]])
    if flags & 16:
        pos = put_signed(buf, put_signed(buf, pos, mx - st[T1]), st[F1])
    if flags & 32:
        pos = put_signed(buf, put_signed(buf, pos, mx - st[T0]), st[F0])
    if flags & 64:
        pos = put_signed(buf, pos, mx - st[AT])
    if flags & 128:
        pos = put8(buf, put_signed(buf, pos, mm - st[TM]), tenure_bits)
    pos = put_bits_ring(buf, pos, st, D_TAG, D_VAL, 2, D_SIZE, today)
    pos = put_bits_ring(buf, pos, st, M_TAG, M_VAL, 1, M_SIZE, mm)
    lo = 0
    for group in range(3):
        hi = lo
        while hi < n and group_of(e_code[hi]) == group:
            hi += 1
        horizon = mx - (W35_MS if group == _LOGINS else W30_MS)
        pos = _put_group(buf, pos, e_ts, e_code, e_amt, lo, hi, group, mx, horizon)
        lo = hi
    return pos


@njit(cache=True)
def put_seen(buf, pos, h, clock_minus_ts):  # type: ignore[no-untyped-def]
    """Write one seen id (its hash, and its age against the clock)."""
    return put_signed(buf, put8(buf, pos, h), clock_minus_ts)


@njit(cache=True)
def put_count(buf, pos, count):  # type: ignore[no-untyped-def]
    return put_signed(buf, pos, count)


@njit(cache=True)
def _get_group(buf, pos, group, clock,  # type: ignore[no-untyped-def]
               e_ts, e_code, e_amt, n):
    """Read one group written by :func:`_put_group` into the entry arrays after their ``n``
    entries, oldest first; returns (new count, position)."""
    count, pos = get_unsigned(buf, pos)
    t = clock
    for j in range(n + count - 1, n - 1, -1):
        if group == _COMPLAINTS:
            z, pos = get_unsigned(buf, pos)
            t -= z >> 2
            e_code[j] = z & 3
            e_amt[j] = 0
        else:
            z, pos = get4(buf, pos)
            t -= z
            e_code[j] = E_LOGIN if group == _LOGINS else E_SPEND
            e_amt[j] = 0
            if group == _SPENDS:
                e_amt[j], pos = get_signed(buf, pos)
        e_ts[j] = t
    return n + count, pos


@njit(cache=True)
def _get_scalars(buf, pos, st):  # type: ignore[no-untyped-def]
    """The scalars of a blob (from its version byte) into ``st``: (position after them,
    today, tenure bits)."""
    mx, pos = get_signed(buf, pos + 1)
    mm, pos = get_signed(buf, pos)
    today = mx // DAY_MS
    st[MX] = mx
    st[MM] = mm
    age, pos = get_signed(buf, pos)
    st[FD] = today - age
    flags, pos = get_signed(buf, pos)
    for k in range(4):
        if flags & (1 << k):
            age, pos = get_signed(buf, pos)
            st[_LAST_DAYS[k]] = today - age
    if flags & 16:
        age, pos = get_signed(buf, pos)
        st[T1] = mx - age
        st[F1], pos = get_signed(buf, pos)
    if flags & 32:
        age, pos = get_signed(buf, pos)
        st[T0] = mx - age
        st[F0], pos = get_signed(buf, pos)
    if flags & 64:
        age, pos = get_signed(buf, pos)
        st[AT] = mx - age
    tenure_bits = 0
    if flags & 128:
        age, pos = get_signed(buf, pos)
        st[TM] = mm - age
        tenure_bits, pos = get8(buf, pos)
    return pos, today, tenure_bits


@njit(cache=True)
def entries_bound(buf, pos, end, st):  # type: ignore[no-untyped-def]
    """At most how many counted events :func:`decode_head` reads from the value
    ``buf[pos:end]`` (``st``: scratch, overwritten): each takes a byte or more in version
    2; version 1's day buckets are counted."""
    if buf[pos] != VERSION_1:
        return end - pos
    pos, today, _ = _get_scalars(buf, pos, st)
    return get_v1_buckets(buf, pos, st, today, st, st, st, 0, False)[0]


@njit(cache=True)
def decode_head(buf, pos, st, e_ts, e_code, e_amt, n):  # type: ignore[no-untyped-def]
    """Read a blob's state into the empty state ``st`` and its counted events after the
    ``n`` entries of the entry arrays (which have room for :func:`entries_bound` more), up
    to its seen ids; returns (their count, the position of the first, the tenure bits, the
    new entry count). ``buf[pos]`` must be a :func:`known` version."""
    version = buf[pos]
    pos, today, tenure_bits = _get_scalars(buf, pos, st)
    if version == VERSION_1:
        first = n
        n, pos = get_v1_buckets(buf, pos, st, today, e_ts, e_code, e_amt, n, True)
        for j in range(first + 1, n):  # (in ring order: put them in order)
            settle(e_ts[first:], e_code[first:], e_amt[first:], j - first)
        pos = get_ring_v2(buf, pos, st, M_TAG, M_VAL, 1, M_SIZE, st[MM])
    else:
        if version == VERSION_2:
            pos = get_ring_v2(buf, pos, st, D_TAG, D_VAL, 2, D_SIZE, today)
            pos = get_ring_v2(buf, pos, st, M_TAG, M_VAL, 1, M_SIZE, st[MM])
        else:
            pos = get_bits_ring(buf, pos, st, D_TAG, D_VAL, 2, D_SIZE, today)
            pos = get_bits_ring(buf, pos, st, M_TAG, M_VAL, 1, M_SIZE, st[MM])
        for group in range(3):
            n, pos = _get_group(buf, pos, group, st[MX], e_ts, e_code, e_amt, n)
    count, pos = get_signed(buf, pos)
    return count, pos, tenure_bits, n


@njit(cache=True)
def known(version):  # type: ignore[no-untyped-def]
    """Whether a blob starting with byte ``version`` can be decoded."""
    return version == VERSION or version == VERSION_2 or version == VERSION_1


def readable(version: int) -> bool:
    """Whether a blob starting with byte ``version`` can be decoded."""
    return version in (VERSION, VERSION_2, VERSION_1)


EXPECTED = f"expected {VERSION} (or {VERSION_2}, {VERSION_1})"  # for the error messages


@njit(cache=True)
def get_seen(buf, pos, mx):  # type: ignore[no-untyped-def]
    """One seen id: (hash, event time, next position)."""
    h, pos = get8(buf, pos)
    age, pos = get_signed(buf, pos)
    return h, mx - age, pos


@njit(cache=True)
def _decode(buf, off, states, tenure_bits, attrs_at):  # type: ignore[no-untyped-def]
    n = len(off) - 1
    seen_count = np.zeros(n + 1, np.int64)
    seen_hash = np.empty(len(buf) // 9 + 1, np.int64)
    seen_ts = np.empty(len(buf) // 9 + 1, np.int64)
    e_count = np.zeros(n + 1, np.int64)
    e_ts = np.empty(len(buf) // 4 + 16, np.int64)
    e_code = np.empty(len(e_ts), np.int64)
    e_amt = np.empty(len(e_ts), np.int64)
    m = 0
    k = 0
    for i in range(n):
        pos = off[i]
        if pos == off[i + 1]:
            attrs_at[i] = pos
            continue
        if not known(buf[pos]):
            return i, seen_hash[:0], seen_ts[:0], seen_count, e_ts[:0], e_code[:0], \
                e_amt[:0], e_count
        bound = entries_bound(buf, pos, off[i + 1], states[i])
        if k + bound > len(e_ts):
            e_ts, e_code, e_amt = reserve(e_ts, e_code, e_amt, k, bound)
        before = k
        count, pos, tenure_bits[i], k = decode_head(buf, pos, states[i], e_ts, e_code, e_amt, k)
        e_count[i + 1] = k - before
        for _ in range(count):
            seen_hash[m], seen_ts[m], pos = get_seen(buf, pos, states[i, MX])
            m += 1
        seen_count[i + 1] = count
        attrs_at[i] = pos
    return -1, seen_hash[:m], seen_ts[:m], np.cumsum(seen_count), e_ts[:k], e_code[:k], \
        e_amt[:k], np.cumsum(e_count)


def decode_states(joined: bytes, lengths: np.ndarray) -> tuple[Any, ...]:
    """Concatenated values and their lengths (0: unknown subscriber) → (states, tenure, seen
    hashes, seen event times, seen offsets, counted events as (event times, entry codes,
    cents, offsets), where each value's tail starts, the ``n + 1`` value offsets). Value i's
    counted events are ``e_off[i]:e_off[i + 1]`` of the entry arrays (in no particular
    order), its tail (extension frame, attributes msgpack) ``joined[tail_at[i]:off[i + 1]]``.
    Raises ValueError on a blob of a version it cannot read."""
    n = len(lengths)
    off = np.zeros(n + 1, np.int64)
    np.cumsum(lengths, out=off[1:])
    buf = np.frombuffer(joined, np.uint8)
    states, tenure = empty_states(n)
    attrs_at = np.empty(n, np.int64)
    bad, seen_hash, seen_ts, seen_off, e_ts, e_code, e_amt, e_off = _decode(
        buf, off, states, tenure.view(np.int64), attrs_at)
    if bad >= 0:
        raise ValueError(f"state blob of version {buf[off[bad]]}, {EXPECTED}")
    return (states, tenure, seen_hash, seen_ts, seen_off, e_ts, e_code, e_amt, e_off,
            attrs_at, off)
