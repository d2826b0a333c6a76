"""The worker's write-through copy of its subscribers' stored state.

A worker owns its partitions' subscribers: it is the only writer of their state values and
cooldown entries, so after a batch's commit it already knows what Redis holds. Keeping that
copy turns a batch's read round trip into a lookup, and only subscribers not seen recently
(or evicted) are read from Redis.

The copy is only trusted while nothing else may have written those keys:

- ``clear()`` on every partition revocation or assignment: another worker may have owned
  (and written) any of the subscribers in between;
- ``discard()`` after a silence sweep, which writes states and cooldowns by other means;
- ``put()`` takes the generation read before the batch, and ignores it if a clear happened
  meanwhile (a rebalance during a batch).

Past ``capacity`` subscribers (0 disables the cache) the least recently written are evicted
(roughly: see ``features.arena``, which holds the values and cooldown entries in one log
buffer, so that a batch's lookups and writes are one numba call each).

A batch may also be put *before* its commit lands (``pin=True``), so the next batch can
stage on it while the commit is under way (``features.commits.CommitChain``). Its entries
are then pinned: never evicted until :meth:`StateCache.unpin` says the commit landed. If it
fails, the caller clears the cache, and must not commit any batch staged on it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgspec
import numpy as np

from features.arena import ValueArena, encode_keys, interleave
from features.values import StateValues

__all__ = ["CachedStates", "StateCache"]

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(dict[str, bytes]).decode
_NO_LEDGER: dict[str, bytes] = {}


@dataclass(frozen=True)
class CachedStates:
    """What the cache holds of a batch's ``n`` subscribers: ``found[i]``, the found values
    back to back (``lengths[i]`` bytes each; 0 if not found), and the found subscribers'
    non-empty cooldown entries."""

    found: np.ndarray
    lengths: np.ndarray
    values: np.ndarray
    ledgers: dict[str, dict[str, bytes]]

    def with_fetched(self, fetched: bytes) -> tuple[np.ndarray, np.ndarray]:
        """Every subscriber's value in order, as (one buffer, n + 1 offsets), given the
        others' values as read.lua answers (their uint32 sizes, then the values)."""
        missing = len(self.found) - int(np.count_nonzero(self.found))
        sizes = np.frombuffer(fetched, "<u4", missing).astype(np.int64)
        values, off = interleave(self.found, self.lengths, self.values,
                                 np.frombuffer(fetched, np.uint8, offset=4 * missing), sizes)
        values.flags.writeable = False
        return values, off


class StateCache:
    """Subscriber id → (stored state value, cooldown entries), bounded by ``capacity``."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._arena = ValueArena()
        self._pinned: dict[int, int] = {}  # batch → how many subscribers a landing batch put
        self._batches = 0

    def __len__(self) -> int:
        return len(self._arena)

    @property
    def memory_bytes(self) -> int:
        """The memory the cache takes (its log buffer and index)."""
        return self._arena.memory_bytes

    def get(self, subscribers: Sequence[str]) -> CachedStates:
        """The subscribers' cached states (counted as hits and misses)."""
        found, lengths, values, ledger_lengths, ledger_raw = self._arena.get(
            encode_keys(list(subscribers)))
        values.flags.writeable = False  # (as values read from Redis: one kernel signature)
        hits = int(np.count_nonzero(found))
        self.hits += hits
        self.misses += len(subscribers) - hits
        ledgers = {}
        if len(ledger_raw):
            raw, end = ledger_raw.tobytes(), 0
            for i in np.flatnonzero(ledger_lengths).tolist():
                ledgers[subscribers[i]] = _decode(raw[end:end + ledger_lengths[i]])
                end += int(ledger_lengths[i])
        return CachedStates(found, lengths, values, ledgers)

    def put(self, generation: int, states: Mapping[str, bytes],
            entries: Mapping[str, Mapping[str, bytes | str]],
            previous: Mapping[str, Mapping[str, bytes]], pin: bool = False) -> int:
        """Record what a committed batch stored: each subscriber's new value (``states``, a
        :class:`~features.values.StateValues` or a plain mapping), and its cooldown entries
        (``previous`` updated by the batch's ``entries``). Ignored if the cache was cleared
        since ``generation`` was read. With ``pin`` (the commit is still under way) returns
        the token to :meth:`unpin` once it lands; the entries are not evicted before."""
        self._batches += 1
        batch = self._batches
        token = batch if pin else 0
        if not self.capacity or generation != self.generation:
            return token
        values = states if isinstance(states, StateValues) else StateValues.of(states)
        raw, off = values.buffer()
        ledger_raw, ledger_off = self._ledgers(values, entries, previous)
        if pin:
            self._pinned[token] = len(values)
        self._arena.put(encode_keys(values.subscribers), raw, off, ledger_raw, ledger_off,
                        batch, self._keep(), self._pinned_batches())
        return token

    @staticmethod
    def _ledgers(values: StateValues, entries: Mapping[str, Mapping[str, bytes | str]],
                 previous: Mapping[str, Mapping[str, bytes]]) -> tuple[np.ndarray, np.ndarray]:
        """Each subscriber's cooldown entries after the batch, msgpack (none: empty), as
        one buffer and n + 1 offsets."""
        lengths = np.zeros(len(values), np.int64)
        encoded: dict[int, bytes] = {}
        for sid in {*previous, *entries}:
            if sid not in values:
                continue
            ledger = dict(previous.get(sid, _NO_LEDGER))
            for name, entry in entries.get(sid, _NO_LEDGER).items():
                ledger[name] = entry if isinstance(entry, bytes) else entry.encode()
            if ledger:
                i = values.index(sid)
                encoded[i] = _encode(ledger)
                lengths[i] = len(encoded[i])
        off = np.zeros(len(values) + 1, np.int64)
        np.cumsum(lengths, out=off[1:])
        raw = b"".join([encoded[i] for i in sorted(encoded)])
        return np.frombuffer(raw, np.uint8), off

    def _keep(self) -> int:
        """How many entries may stay: the capacity, or all the pinned ones if more. Pinned
        entries are among the most recently written (batches are put in order)."""
        return max(self.capacity, sum(self._pinned.values()))

    def _pinned_batches(self) -> np.ndarray:
        return np.fromiter(self._pinned, np.int64, len(self._pinned))

    def unpin(self, token: int) -> None:
        """The commit of the batch put with ``token`` landed: its entries may be evicted."""
        if self._pinned.pop(token, None) is not None:
            self._arena.evict(self._keep(), self._pinned_batches())

    def take_counts(self) -> tuple[int, int]:
        """Hits and misses since the last call."""
        counts = (self.hits, self.misses)
        self.hits = self.misses = 0
        return counts

    def discard(self, subscribers: Iterable[str]) -> None:
        """Forget these subscribers (their keys were written by another path; never while a
        batch of theirs is landing)."""
        subscribers = list(subscribers)
        if subscribers:
            self._arena.discard(encode_keys(subscribers))

    def clear(self) -> None:
        """Forget everything (partitions moved); batches staged before this are not cached."""
        self._arena.clear()
        self._pinned.clear()
        self.generation += 1
