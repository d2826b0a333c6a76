"""The worker's write-through copy of its subscribers' stored state.

A worker owns its partitions' subscribers: it is the only writer of their state blobs and
cooldown entries, so after a batch's commit it already knows what Redis holds. Keeping that
copy turns a batch's read round trip into a lookup, and only subscribers not seen recently
(or evicted) are read from Redis.

The copy is only trusted while nothing else may have written those keys:

- ``clear()`` on every partition revocation or assignment: another worker may have owned
  (and written) any of the subscribers in between;
- ``discard()`` after a silence sweep, which writes states and cooldowns by other means;
- ``put()`` takes the generation read before the batch, and ignores it if a clear happened
  meanwhile (a rebalance during a batch).

Entries are kept in least-recently-written order and the oldest are evicted past
``capacity`` (0 disables the cache).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

__all__ = ["CachedState", "StateCache"]

CachedState = tuple[bytes, dict[str, bytes]]  # the stored value, cooldown entries ("r:" fields)
_NONE: dict[str, bytes] = {}


class StateCache:
    """Subscriber id → (stored state value, cooldown entries), bounded by ``capacity``."""

    def __init__(self, capacity: int = 100_000) -> None:
        if capacity < 0:
            raise ValueError("capacity must be >= 0")
        self.capacity = capacity
        self.generation = 0
        self.hits = 0
        self.misses = 0
        self._entries: dict[str, CachedState] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, subscribers: Sequence[str]) -> list[CachedState | None]:
        """Each subscriber's cached state, or None (counted as hits and misses)."""
        found = [self._entries.get(sid) for sid in subscribers]
        missed = found.count(None)
        self.misses += missed
        self.hits += len(found) - missed
        return found

    def put(self, generation: int, states: Mapping[str, bytes],
            entries: Mapping[str, Mapping[str, bytes | str]],
            previous: Mapping[str, Mapping[str, bytes]]) -> None:
        """Record what a committed batch stored: each subscriber's new value, and its cooldown
        entries (``previous`` updated by the batch's ``entries``). Ignored if the cache was
        cleared since ``generation`` was read."""
        if not self.capacity or generation != self.generation:
            return
        cache = self._entries
        for sid, value in states.items():
            ledger = previous.get(sid, _NONE)  # never mutated: readers copy it
            if sid in entries:
                ledger = dict(ledger)
                for field, entry in entries[sid].items():
                    ledger[field] = entry if isinstance(entry, bytes) else entry.encode()
            cache.pop(sid, None)  # re-insert: most recently written last
            cache[sid] = (value, ledger)
        excess = len(cache) - self.capacity
        if excess > 0:
            for sid in [sid for sid, _ in zip(cache, range(excess))]:
                del cache[sid]

    def take_counts(self) -> tuple[int, int]:
        """Hits and misses since the last call."""
        counts = (self.hits, self.misses)
        self.hits = self.misses = 0
        return counts

    def discard(self, subscribers: Iterable[str]) -> None:
        """Forget these subscribers (their keys were written by another path)."""
        for sid in subscribers:
            self._entries.pop(sid, None)

    def clear(self) -> None:
        """Forget everything (partitions moved); batches staged before this are not cached."""
        self._entries.clear()
        self.generation += 1
