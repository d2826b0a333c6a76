"""A batch's state values as one buffer: what its commit stores and the state cache keeps.

``FeatureStore.stage`` encodes every subscriber's new value (codec blob, extension frame,
attributes; see ``features.extension``) into one buffer. :class:`StateValues` hands that
buffer to the commit as it is, gives each value to the cache as bytes, and lets another
layer read and replace a subscriber's extension record (``online_models.labels``), without
a Python step per subscriber on the way.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence

import numpy as np
from numba import njit

from churnwatch.infra.redis.resp import Packed, mset
from features.codec import extension_at
from features.extension import frame, split

__all__ = ["StateValues"]


def _offsets_of(pieces: Sequence[bytes]) -> np.ndarray:
    """The ``n + 1`` offsets of ``pieces`` joined back to back."""
    off = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, pieces), np.int64, len(pieces)), out=off[1:])
    return off


@njit(cache=True)
def _bodies(raw, off, blob_len):  # type: ignore[no-untyped-def]
    """(start, end) of each value's extension body (start == end: none)."""
    n = len(blob_len)
    starts = np.zeros(n, np.int64)
    ends = np.zeros(n, np.int64)
    for i in range(n):
        starts[i], ends[i] = extension_at(raw, off[i] + blob_len[i], off[i + 1])
    return starts, ends


class StateValues(Mapping[str, bytes]):
    """Subscriber → stored value, for the ``subscribers`` of one batch (in batch order).

    ``raw`` holds the values back to back, ``off`` their ``n + 1`` offsets, ``blob_len`` the
    length of each one's codec blob (the rest is its tail). A value of length 0 is stored
    nowhere (an unknown subscriber), and is left out of :meth:`packed`.
    """

    __slots__ = ("subscribers", "_raw", "_offsets", "_off", "_blob_len", "_index", "_replaced",
                 "_values", "_buffer")

    def __init__(self, subscribers: Sequence[str], raw: bytes, off: np.ndarray,
                 blob_len: np.ndarray) -> None:
        if len(off) != len(subscribers) + 1 or len(blob_len) != len(subscribers):
            raise ValueError("need n + 1 offsets and n blob lengths for n subscribers")
        self.subscribers = list(subscribers)
        self._raw = raw
        self._offsets = off  # as given, for numba
        self._off: list[int] = off.tolist()  # for slicing in Python
        self._blob_len = blob_len
        self._index: dict[str, int] | None = None
        self._replaced: dict[int, bytes] = {}
        self._values: list[bytes] | None = None
        self._buffer: tuple[np.ndarray, np.ndarray] | None = None

    @classmethod
    def of(cls, values: Mapping[str, bytes]) -> StateValues:
        """From a plain mapping (whole values; their blob lengths are not known, so
        :meth:`parts` and :meth:`replace_extension` are not available)."""
        pieces = list(values.values())
        return cls(list(values), b"".join(pieces), _offsets_of(pieces),
                   np.full(len(pieces), -1, np.int64))

    def index(self, subscriber_id: str) -> int:
        """The subscriber's position in ``subscribers`` (KeyError: not in the batch)."""
        return self._at(subscriber_id)

    def _at(self, subscriber_id: str) -> int:
        if self._index is None:
            self._index = dict(zip(self.subscribers, range(len(self.subscribers))))
        return self._index[subscriber_id]

    def _value(self, i: int) -> bytes:
        if self._replaced:
            value = self._replaced.get(i)
            if value is not None:
                return value
        return self._raw[self._off[i]:self._off[i + 1]]

    def __getitem__(self, subscriber_id: str) -> bytes:
        return self._value(self._at(subscriber_id))

    def __contains__(self, subscriber_id: object) -> bool:
        try:
            self._at(subscriber_id)  # type: ignore[arg-type]
        except (KeyError, TypeError):
            return False
        return True

    def __iter__(self) -> Iterator[str]:
        return iter(self.subscribers)

    def __len__(self) -> int:
        return len(self.subscribers)

    def in_order(self) -> list[bytes]:
        """Every value, in ``subscribers`` order (shared: do not mutate)."""
        if self._values is None:
            raw, off = self._raw, self._off
            values = list(map(raw.__getitem__, map(slice, off[:-1], off[1:])))
            for i, value in self._replaced.items():
                values[i] = value
            self._values = values
        return self._values

    def parts(self, subscriber_id: str) -> tuple[bytes, bytes, bytes]:
        """(codec blob, extension body, attributes msgpack) of a subscriber's value."""
        i = self._at(subscriber_id)
        size = int(self._blob_len[i])
        if size < 0:
            raise ValueError("values built from a mapping have no known blob length")
        value = self._value(i)
        return (value[:size], *split(value[size:]))

    def extension_heads(self, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Every subscriber's extension body length and its first ``size`` bytes (an
        ``(n, size)`` uint8 array, zero-padded), at once: what a layer needs to skip the
        subscribers whose records cannot change without reading each record."""
        if len(self._blob_len) and self._blob_len.min() < 0:
            raise ValueError("values built from a mapping have no known blob length")
        raw = np.frombuffer(self._raw, np.uint8)
        starts, ends = _bodies(raw, np.asarray(self._offsets, np.int64), self._blob_len)
        lengths = ends - starts
        heads = np.zeros((len(lengths), size), np.uint8)
        for k in range(size):
            has = lengths > k
            heads[has, k] = raw[starts[has] + k]
        for i in self._replaced:
            body = self.parts(self.subscribers[i])[1]
            lengths[i] = len(body)
            heads[i] = np.frombuffer(body[:size].ljust(size, b"\0"), np.uint8)
        return lengths, heads

    def replace_extension(self, subscriber_id: str, body: bytes) -> None:
        """Store ``body`` as the subscriber's extension record (blob and attributes kept)."""
        blob, _, attributes = self.parts(subscriber_id)
        self._replaced[self._at(subscriber_id)] = blob + frame(body) + attributes
        self._values = self._buffer = None

    def replace_attributes(self, subscriber_id: str, attributes: bytes) -> None:
        """Store ``attributes`` (msgpack) as the subscriber's attributes (blob and extension
        record kept)."""
        blob, body, _ = self.parts(subscriber_id)
        self._replaced[self._at(subscriber_id)] = blob + frame(body) + attributes
        self._values = self._buffer = None

    def buffer(self) -> tuple[np.ndarray, np.ndarray]:
        """Every value, replacements included, as (one uint8 buffer, n + 1 offsets; shared:
        do not mutate). Built once until the next replacement (the commit and the state
        cache both take it)."""
        if self._buffer is None:
            self._buffer = self._joined()
        return self._buffer

    def _joined(self) -> tuple[np.ndarray, np.ndarray]:
        raw = np.frombuffer(self._raw, np.uint8)
        if not self._replaced:
            return raw, self._offsets
        off, pieces, at = self._off, [], 0
        lengths = np.diff(self._offsets)
        for i in sorted(self._replaced):
            pieces += [self._raw[off[at]:off[i]], self._replaced[i]]
            lengths[i] = len(self._replaced[i])
            at = i + 1
        pieces.append(self._raw[off[at]:off[-1]])
        new_off = np.zeros(len(lengths) + 1, np.int64)
        np.cumsum(lengths, out=new_off[1:])
        return np.frombuffer(b"".join(pieces), np.uint8), new_off

    def mset(self, names: Sequence[str]) -> Packed | None:
        """``MSET`` of ``names[i]`` (subscriber i's key) → its value, for every non-empty
        value, packed in one pass (None if all are empty)."""
        return mset(names, *self.buffer())

    def packed(self, members: Sequence[int] | None = None) -> tuple[list[int], bytes]:
        """The non-empty values of the subscribers at ``members`` (indices into
        ``subscribers``; default all) as (their indices, ``len(indices)`` little-endian
        uint32 sizes then the values back to back), as the commit script takes them on a
        cluster (a single Redis gets them by ``MSET``, see ``alerting.ledger``)."""
        values = self.in_order()
        sizes = np.fromiter(map(len, values), np.int64, len(values))
        chosen = np.arange(len(values)) if members is None else np.asarray(members, np.int64)
        chosen = chosen[sizes[chosen] > 0].tolist()
        return chosen, (sizes[chosen].astype("<u4").tobytes()
                        + b"".join([values[i] for i in chosen]))
