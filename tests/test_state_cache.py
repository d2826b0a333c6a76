"""The worker's state cache: what it keeps, evicts and refuses (see features/cache.py)."""

from __future__ import annotations

import pytest

from features.cache import StateCache


def test_put_merges_cooldowns_and_get_counts_hits_and_misses() -> None:
    cache = StateCache(10)
    cache.put(cache.generation, {"a": b"A1", "b": b"B1"}, {"a": {"r:x": "1|2|e"}},
              {"a": {"r:y": b"old"}})
    assert cache.get(["a", "b", "c"]) == [(b"A1", {"r:y": b"old", "r:x": b"1|2|e"}, None),
                                         (b"B1", {}, None), None]
    assert cache.take_counts() == (2, 1)
    assert cache.take_counts() == (0, 0)


def test_decoded_attributes_are_kept_beside_the_value() -> None:
    cache = StateCache(10)
    fee = {"monthly_fee": 25.0}
    cache.put(0, {"a": b"1", "b": b"1"}, {}, {}, attrs={"a": fee})
    assert cache.get(["a", "b"]) == [(b"1", {}, fee), (b"1", {}, None)]
    assert cache.get(["a"])[0][2] is fee  # shared, not copied


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
    assert cache.get(["a"]) == [(b"fresh", {}, None)]


def test_discard_and_disabled_cache() -> None:
    cache = StateCache(10)
    cache.put(0, {"a": b"1", "b": b"1"}, {}, {})
    cache.discard(["a", "zz"])
    assert cache.get(["a", "b"]) == [None, (b"1", {}, None)]
    off = StateCache(0)
    off.put(0, {"a": b"1"}, {}, {})
    assert len(off) == 0
    with pytest.raises(ValueError):
        StateCache(-1)



def test_pinned_entries_outlive_capacity_until_their_commit_lands() -> None:
    cache = StateCache(1)
    first = cache.put(0, {"a": b"1", "b": b"1"}, {}, {}, pin=True)
    second = cache.put(0, {"c": b"1"}, {}, {}, pin=True)
    assert first != second
    assert [hit is not None for hit in cache.get(["a", "b", "c"])] == [True, True, True]
    cache.unpin(first)  # a and b landed; c is still landing
    assert [hit is not None for hit in cache.get(["a", "b", "c"])] == [False, False, True]
    cache.unpin(second)
    cache.unpin(second)  # unknown token: nothing
    assert len(cache) == 1


def test_clear_drops_pins_and_a_stale_pinned_put_is_ignored() -> None:
    cache = StateCache(1)
    read_at = cache.generation
    token = cache.put(read_at, {"a": b"1", "b": b"1"}, {}, {}, pin=True)
    cache.clear()  # the commit failed
    late = cache.put(read_at, {"x": b"stale"}, {}, {}, pin=True)
    assert late and cache.get(["a", "b", "x"]) == [None, None, None]
    cache.unpin(token)
    cache.put(cache.generation, {"c": b"1", "d": b"1"}, {}, {})
    assert len(cache) == 1  # nothing pinned any more
