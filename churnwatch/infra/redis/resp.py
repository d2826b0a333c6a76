"""Commands packed once, in the Redis protocol (RESP), for the batch commit's ``MSET``.

hiredis packs a command argument by argument, each from a Python object; a batch's ``MSET``
has two per subscriber and its values already sit in one buffer (``features.values``). So
:func:`mset` writes the whole command in one numba pass, and :class:`Packed` carries it
through a redis-py pipeline unchanged (``churnwatch.infra.redis.connect`` connections send it as
it is).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numba import njit

from churnwatch.core.memcopy import copy

__all__ = ["Packed", "mset"]


class Packed:
    """A command already in RESP: ``pipe.execute_command(name, Packed(chunk))`` sends
    ``chunk`` as the whole command (``name`` picks redis-py's reply parsing)."""

    __slots__ = ("chunk",)

    def __init__(self, chunk: bytes | memoryview) -> None:
        self.chunk = chunk


@njit(cache=True)
def _put_int(out, pos, v):  # type: ignore[no-untyped-def]
    digits = 1
    x = v
    while x >= 10:
        x //= 10
        digits += 1
    for k in range(digits - 1, -1, -1):
        out[pos + k] = 48 + v % 10
        v //= 10
    return pos + digits


@njit(cache=True)
def _put_bulk(out, pos, src, start, end):  # type: ignore[no-untyped-def]
    out[pos] = 36  # $
    pos = _put_int(out, pos + 1, end - start)
    out[pos] = 13
    out[pos + 1] = 10
    pos += 2
    copy(out, pos, src, start, end - start)
    pos += end - start
    out[pos] = 13
    out[pos + 1] = 10
    return pos + 2


@njit(cache=True)
def _mset(names, name_off, raw, off):  # type: ignore[no-untyped-def]
    """``MSET`` of name i → value i for every non-empty value (count 0: nothing)."""
    n = len(off) - 1
    count = 0
    size = 32
    for i in range(n):
        if off[i + 1] > off[i]:
            count += 1
            size += (name_off[i + 1] - name_off[i]) + (off[i + 1] - off[i]) + 2 * 24
    out = np.empty(size, np.uint8)
    out[0] = 42  # *
    pos = _put_int(out, 1, 2 * count + 1)
    head = b"\r\n$4\r\nMSET\r\n"
    for k in range(len(head)):
        out[pos + k] = head[k]
    pos += len(head)
    for i in range(n):
        if off[i + 1] > off[i]:
            pos = _put_bulk(out, pos, names, name_off[i], name_off[i + 1])
            pos = _put_bulk(out, pos, raw, off[i], off[i + 1])
    return out[:pos], count


def mset(names: Sequence[str], raw: bytes | np.ndarray, off: np.ndarray) -> Packed | None:
    """``MSET names[i] raw[off[i]:off[i + 1]]`` for every non-empty value, packed (None if
    every value is empty)."""
    joined = "".join(names)
    encoded = joined.encode()
    if len(encoded) == len(joined):  # ASCII: a character is a byte
        lengths = np.fromiter(map(len, names), np.int64, len(names))
    else:
        lengths = np.fromiter((len(name.encode()) for name in names), np.int64, len(names))
    name_off = np.zeros(len(names) + 1, np.int64)
    np.cumsum(lengths, out=name_off[1:])
    command, count = _mset(np.frombuffer(encoded, np.uint8), name_off,
                           np.frombuffer(raw, np.uint8), np.asarray(off, np.int64))
    return Packed(memoryview(command)) if count else None
