"""Byte-level primitives of the state codec (numba): LEB128 varints (zigzag for signed
values) and little-endian raw integers, each writing into or reading from a uint8 buffer at a
position and returning the next position.

Hand-written on purpose: they run inside the batch codec's compiled loops, once per stored
number, where a library call per value would cost more than the whole encode."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def put_signed(buf, pos, v):  # type: ignore[no-untyped-def]
    """Write ``v`` as a zigzag (signed) LEB128 varint."""
    return put_unsigned(buf, pos, (v << 1) ^ (v >> 63))


@njit(cache=True)
def put_unsigned(buf, pos, z):  # type: ignore[no-untyped-def]
    """Write ``z`` >= 0 as an unsigned LEB128 varint."""
    while z >= 128:
        buf[pos] = (z & 127) | 128
        z >>= 7
        pos += 1
    buf[pos] = z
    return pos + 1


@njit(cache=True)
def get_unsigned(buf, pos):  # type: ignore[no-untyped-def]
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
def get_signed(buf, pos):  # type: ignore[no-untyped-def]
    z, pos = get_unsigned(buf, pos)
    return (z >> 1) ^ -(z & 1), pos


@njit(cache=True)
def put8(buf, pos, v):  # type: ignore[no-untyped-def]
    for k in range(8):
        buf[pos + k] = (v >> (8 * k)) & 255
    return pos + 8


@njit(cache=True)
def put4(buf, pos, v):  # type: ignore[no-untyped-def]
    """Write ``0 <= v < 2**32`` as 4 raw bytes, little-endian."""
    buf[pos] = v & 255
    buf[pos + 1] = (v >> 8) & 255
    buf[pos + 2] = (v >> 16) & 255
    buf[pos + 3] = (v >> 24) & 255
    return pos + 4


@njit(cache=True)
def get4(buf, pos):  # type: ignore[no-untyped-def]
    v = (np.int64(buf[pos]) | (np.int64(buf[pos + 1]) << 8) | (np.int64(buf[pos + 2]) << 16)
         | (np.int64(buf[pos + 3]) << 24))
    return v, pos + 4


@njit(cache=True)
def get8(buf, pos):  # type: ignore[no-untyped-def]
    v = 0
    for k in range(8):
        v |= np.int64(buf[pos + k]) << (8 * k)
    return v, pos + 8
