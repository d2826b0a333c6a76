"""The worker's state cache: what it keeps, evicts and refuses (see features/cache.py)."""

from __future__ import annotations

import pytest

from features.cache import StateCache


def test_put_merges_cooldowns_and_get_counts_hits_and_misses() -> None:
    cache = StateCache(10)
    cache.put(cache.generation, {"a": b"A1", "b": b"B1"}, {"a": {"r:x": "1|2|e"}},
              {"a": {"r:y": b"old"}})
    assert cache.get(["a", "b", "c"]) == [(b"A1", {"r:y": b"old", "r:x": b"1|2|e"}),
                                         (b"B1", {}), None]
    assert cache.take_counts() == (2, 1)
    assert cache.take_counts() == (0, 0)


def test_the_least_recently_written_are_evicted_past_capacity() -> None:
    cache = StateCache(2)
    cache.put(0, {"a": b"1", "b": b"1"}, {}, {})
    cache.put(0, {"a": b"2"}, {}, {})  # a is now the most recent
    cache.put(0, {"c": b"1"}, {}, {})
    assert [hit is not None for hit in cache.get(["a", "b", "c"])] == [True, False, True]
    assert len(cache) == 2


def test_a_batch_read_before_a_clear_is_not_cached() -> None:
    cache = StateCache(10)
    read_at = cache.generation
    cache.clear()  # a rebalance while the batch was in flight
    cache.put(read_at, {"a": b"stale"}, {}, {})
    assert cache.get(["a"]) == [None]
    cache.put(cache.generation, {"a": b"fresh"}, {}, {})
    assert cache.get(["a"]) == [(b"fresh", {})]


def test_discard_and_disabled_cache() -> None:
    cache = StateCache(10)
    cache.put(0, {"a": b"1", "b": b"1"}, {}, {})
    cache.discard(["a", "zz"])
    assert cache.get(["a", "b"]) == [None, (b"1", {})]
    off = StateCache(0)
    off.put(0, {"a": b"1"}, {}, {})
    assert len(off) == 0
    with pytest.raises(ValueError):
        StateCache(-1)

