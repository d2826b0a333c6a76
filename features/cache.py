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

A batch may also be put *before* its commit lands (``pin=True``), so the next batch can
stage on it while the commit is under way (``features.commits.CommitChain``). Its entries
are then pinned: never evicted until :meth:`StateCache.unpin` says the commit landed. If it
fails, the caller clears the cache, and must not commit any batch staged on it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from itertools import repeat

from features.values import StateValues

__all__ = ["CachedState", "StateCache"]

# the stored value, its cooldown entries ("r:" fields) and its attributes decoded (or None)
CachedState = tuple[bytes, dict[str, bytes], "dict[str, float] | None"]
_NONE: dict[str, bytes] = {}
_NONE_ATTRS: dict[str, dict[str, float]] = {}


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
        self._pinned: dict[int, int] = {}  # token → how many subscribers a landing batch put
        self._tokens = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, subscribers: Sequence[str]) -> list[CachedState | None]:
        """Each subscriber's cached state, or None (counted as hits and misses)."""
        found = list(map(self._entries.get, subscribers))
        missed = found.count(None)
        self.misses += missed
        self.hits += len(found) - missed
        return found

    def put(self, generation: int, states: Mapping[str, bytes],
            entries: Mapping[str, Mapping[str, bytes | str]],
            previous: Mapping[str, Mapping[str, bytes]], pin: bool = False,
            attrs: Mapping[str, dict[str, float]] = _NONE_ATTRS) -> int:
        """Record what a committed batch stored: each subscriber's new value (``states``, a
        :class:`~features.values.StateValues` or a plain mapping), and its cooldown entries
        (``previous`` updated by the batch's ``entries``), with the value's attributes
        decoded (``attrs``, optional; shared, never mutated). Ignored if the cache was
        cleared since ``generation`` was read. With ``pin`` (the commit is still under way)
        returns the token to :meth:`unpin` once it lands; the entries are not evicted
        before."""
        token = 0
        if pin:
            self._tokens += 1
            token = self._tokens
        if not self.capacity or generation != self.generation:
            return token
        if isinstance(states, StateValues):
            sids, values = states.subscribers, states.in_order()
        else:
            sids, values = list(states), list(states.values())
        cache = self._entries
        deque(map(cache.pop, sids, repeat(None)), maxlen=0)  # re-inserted: newest last
        ledgers = map(previous.get, sids, repeat(_NONE))  # never mutated: readers copy them
        cache.update(zip(sids, zip(values, ledgers, map(attrs.get, sids))))
        for sid, fields in entries.items():
            if fields and sid in states:
                value, ledger, decoded = cache[sid]
                ledger = dict(ledger)
                for name, entry in fields.items():
                    ledger[name] = entry if isinstance(entry, bytes) else entry.encode()
                cache[sid] = (value, ledger, decoded)
        if pin:
            self._pinned[token] = len(sids)
        self._evict()
        return token

    def unpin(self, token: int) -> None:
        """The commit of the batch put with ``token`` landed: its entries may be evicted."""
        if self._pinned.pop(token, None) is not None:
            self._evict()

    def _evict(self) -> None:
        """Drop the least recently written entries past capacity. Pinned entries are among
        the most recently written (batches are put in order): keeping as many of the newest
        as were pinned keeps them all."""
        keep = max(self.capacity, sum(self._pinned.values()))
        cache = self._entries
        excess = len(cache) - keep
        if excess > 0:
            for sid in [sid for sid, _ in zip(cache, range(excess))]:
                del cache[sid]

    def take_counts(self) -> tuple[int, int]:
        """Hits and misses since the last call."""
        counts = (self.hits, self.misses)
        self.hits = self.misses = 0
        return counts

    def discard(self, subscribers: Iterable[str]) -> None:
        """Forget these subscribers (their keys were written by another path; never while a
        batch of theirs is landing)."""
        for sid in subscribers:
            self._entries.pop(sid, None)

    def clear(self) -> None:
        """Forget everything (partitions moved); batches staged before this are not cached."""
        self._entries.clear()
        self._pinned.clear()
        self.generation += 1
