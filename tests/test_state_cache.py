"""The worker's state cache: what it keeps, evicts and refuses (see features/cache.py)."""

from __future__ import annotations

import numpy as np
import pytest

from features.cache import StateCache
from features.values import StateValues


def held(cache: StateCache, subscribers: list[str]) -> list[tuple[bytes, dict] | None]:
    """Each subscriber's (cached value, cooldown entries), or None."""
    cached, out, pos = cache.get(subscribers), [], 0
    for sid, found, size in zip(subscribers, cached.found, cached.lengths.tolist()):
        out.append((cached.values[pos:pos + size].tobytes(), cached.ledgers.get(sid, {}))
                   if found else None)
        pos += size
    return out


def test_put_merges_cooldowns_and_get_counts_hits_and_misses() -> None:
    cache = StateCache(10)
    cache.put(cache.generation, {"a": b"A1", "b": b"B1"}, {"a": {"r:x": "1|2|e"}},
              {"a": {"r:y": b"old"}})
    assert held(cache, ["a", "b", "c"]) == [(b"A1", {"r:y": b"old", "r:x": b"1|2|e"}),
                                            (b"B1", {}), None]
    assert cache.take_counts() == (2, 1)
    assert cache.take_counts() == (0, 0)


def test_values_from_redis_fill_the_gaps_in_order() -> None:
    cache = StateCache(10)
    cache.put(0, {"a": b"A", "c": b"CC"}, {}, {})
    read_lua = np.array([3, 0], "<u4").tobytes() + b"BBB"  # b, then d (unknown)
    values, off = cache.get(["a", "b", "c", "d"]).with_fetched(read_lua)
    assert values.tobytes() == b"ABBBCC" and off.tolist() == [0, 1, 4, 6, 6]


def test_a_replaced_value_and_new_cooldowns_are_cached() -> None:
    cache = StateCache(10)
    values = StateValues(["a", "b"], b"blob1" + b"\x80" + b"blob2" + b"\x80",
                         np.array([0, 6, 12]), np.array([5, 5]))
    values.replace_extension("b", b"label")
    cache.put(0, values, {"b": {"r:x": "2"}}, {"a": {"r:y": b"1"}, "b": {"r:z": b"3"}})
    assert held(cache, ["a", "b"]) == [(b"blob1\x80", {"r:y": b"1"}),
                                       (values["b"], {"r:z": b"3", "r:x": b"2"})]


def test_the_least_recently_written_are_evicted_past_capacity() -> None:
    cache = StateCache(2)
    cache.put(0, {"a": b"1", "b": b"1"}, {}, {})
    cache.put(0, {"a": b"2"}, {}, {})  # a is now the most recent
    cache.put(0, {"c": b"1"}, {}, {})
    assert cache.get(["a", "b", "c"]).found.tolist() == [True, False, True]
    assert len(cache) == 2


def test_a_batch_read_before_a_clear_is_not_cached() -> None:
    cache = StateCache(10)
    read_at = cache.generation
    cache.clear()  # a rebalance while the batch was in flight
    cache.put(read_at, {"a": b"stale"}, {}, {})
    assert held(cache, ["a"]) == [None]
    cache.put(cache.generation, {"a": b"fresh"}, {}, {})
    assert held(cache, ["a"]) == [(b"fresh", {})]


def test_discard_and_disabled_cache() -> None:
    cache = StateCache(10)
    cache.put(0, {"a": b"1", "b": b"1"}, {}, {})
    cache.discard(["a", "zz"])
    assert held(cache, ["a", "b"]) == [None, (b"1", {})]
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
    assert cache.get(["a", "b", "c"]).found.tolist() == [True, True, True]
    cache.unpin(first)  # a and b landed; c is still landing
    assert cache.get(["a", "b", "c"]).found.tolist() == [False, False, True]
    cache.unpin(second)
    cache.unpin(second)  # unknown token: nothing
    assert len(cache) == 1


def test_clear_drops_pins_and_a_stale_pinned_put_is_ignored() -> None:
    cache = StateCache(1)
    read_at = cache.generation
    token = cache.put(read_at, {"a": b"1", "b": b"1"}, {}, {}, pin=True)
    cache.clear()  # the commit failed
    late = cache.put(read_at, {"x": b"stale"}, {}, {}, pin=True)
    assert late and held(cache, ["a", "b", "x"]) == [None, None, None]
    cache.unpin(token)
    cache.put(cache.generation, {"c": b"1", "d": b"1"}, {}, {})
    assert len(cache) == 1  # nothing pinned any more
