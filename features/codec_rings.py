"""The day and month buckets of a state blob (``features.codec``): which buckets are kept as
the bits of a varint, then their values (version 3); and version 2's layout, still read (a
count byte, then each kept bucket's age and values). A ring of ``size`` buckets keeps key k
(a day or a month) in slot ``k % size`` of the state: tags from ``tag0``, ``width`` values
each from ``val0``."""

from __future__ import annotations

import numpy as np
from numba import njit

from features.varint import get_signed, get_unsigned, put_signed, put_unsigned


@njit(cache=True)
def _nonzero(st, p, width):  # type: ignore[no-untyped-def]
    for j in range(width):
        if st[p + j] != 0:
            return True
    return False


@njit(cache=True)
def put_bits_ring(buf, pos, st, tag0, val0, width, size, now):  # type: ignore[no-untyped-def]
    """A ring's buckets within ``size`` (at most 63) of ``now``: which are kept as the bits
    of a varint (bit a: the bucket of key ``now − a``), then the values of each kept one,
    newest first."""
    bits = np.int64(0)
    for age in range(size):
        key = now - age
        s = key % size
        if st[tag0 + s] == key and _nonzero(st, val0 + width * s, width):
            bits |= np.int64(1) << age
    pos = put_unsigned(buf, pos, bits)
    for age in range(size):
        if (bits >> age) & 1:
            s = (now - age) % size
            for j in range(width):
                pos = put_signed(buf, pos, st[val0 + width * s + j])
    return pos


@njit(cache=True)
def get_bits_ring(buf, pos, st, tag0, val0, width, size, now):  # type: ignore[no-untyped-def]
    """A ring written by :func:`put_bits_ring` into ``st``; returns the next position."""
    bits, pos = get_unsigned(buf, pos)
    for age in range(size):
        if (bits >> age) & 1:
            key = now - age
            s = key % size
            st[tag0 + s] = key
            for j in range(width):
                st[val0 + width * s + j], pos = get_signed(buf, pos)
    return pos


@njit(cache=True)
def get_ring_v2(buf, pos, st, tag0, val0, width, size, now):  # type: ignore[no-untyped-def]
    """A ring as version 2 wrote it: a count byte, then (age, values) of each kept bucket."""
    n = np.int64(buf[pos])
    pos += 1
    for _ in range(n):
        age, pos = get_signed(buf, pos)
        key = now - age
        s = key % size
        st[tag0 + s] = key
        for j in range(width):
            st[val0 + width * s + j], pos = get_signed(buf, pos)
    return pos
