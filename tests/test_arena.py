"""The state cache's value log (features/arena.py) against a plain dict, on a log small
enough that every run wraps, moves and drops records many times."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.arena import HDR, ValueArena, encode_keys

MAX_RECORD = 256
NO_PINS = np.zeros(0, np.int64)


def joined(pieces: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    off = np.zeros(len(pieces) + 1, np.int64)
    np.cumsum([len(p) for p in pieces], out=off[1:])
    return np.frombuffer(b"".join(pieces), np.uint8), off


def read(arena: ValueArena, keys: list[str]) -> dict[str, tuple[bytes, bytes]]:
    """What the arena holds of ``keys``."""
    found, lengths, values, side_lengths, sides = arena.get(encode_keys(keys))
    out, v, s = {}, 0, 0
    for key, hit, n, m in zip(keys, found.tolist(), lengths.tolist(), side_lengths.tolist()):
        assert hit or n == m == 0
        if hit:
            out[key] = (values[v:v + n].tobytes(), sides[s:s + m].tobytes())
            v, s = v + n, s + m
    assert v == len(values) and s == len(sides)
    return out


def record_size(key: str, value: bytes, side: bytes) -> int:
    return (HDR + 4 * len(key) + len(value) + len(side) + 7) & ~7


keys = st.sampled_from([f"k{i}" for i in range(40)] + ["é", "ключ", "k" * 30])
value = st.binary(max_size=120)
batch = st.dictionaries(keys, st.tuples(value, st.one_of(st.just(b""), st.binary(max_size=40))),
                        min_size=1, max_size=12)
op = st.one_of(
    st.tuples(st.just("put"), batch, st.booleans()),
    st.tuples(st.just("unpin"), st.integers(0, 20)),
    st.tuples(st.just("discard"), st.lists(keys, max_size=5)),
    st.tuples(st.just("clear")),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(op, max_size=80), st.integers(1, 60))
def test_the_arena_holds_exactly_what_was_last_put(ops: list, keep: int) -> None:
    """Never a stale or foreign value; pinned batches and anything that fits in ``keep``
    stay; past ``keep`` records are evicted, none of a pinned batch."""
    arena = ValueArena(log_bytes=0, max_record=MAX_RECORD)
    model: dict[str, tuple[bytes, bytes]] = {}
    writer: dict[str, int] = {}  # key → the batch that wrote its value
    pinned: dict[int, int] = {}
    every = sorted({k for o in ops if o[0] == "put" for k in o[1]} | {"never"})
    for seq, o in enumerate(ops, 1):
        if o[0] == "put":
            items = list(o[1].items())
            if o[2]:
                pinned[seq] = len(items)
            names = [k for k, _ in items]
            arena.put(encode_keys(names), *joined([v for _, (v, _) in items]),
                      *joined([s for _, (_, s) in items]), seq,
                      max(keep, sum(pinned.values())), np.array(list(pinned), np.int64))
            for k, (v, s) in items:
                if record_size(k, v, s) <= MAX_RECORD:
                    model[k], writer[k] = (v, s), seq
                else:
                    model.pop(k, None)
        elif o[0] == "unpin":
            if pinned.pop(o[1], None) is not None:
                arena.evict(max(keep, sum(pinned.values())), np.array(list(pinned), np.int64))
        elif o[0] == "discard":
            arena.discard(encode_keys(o[1] or ["never"]))
            for k in o[1]:
                model.pop(k, None)
        else:
            arena.clear()
            model.clear()
            pinned.clear()
        held = read(arena, every)
        assert all(model[k] == held[k] for k in held)  # nothing stale, nothing unknown
        assert len(arena) == len(held)
        limit = max(keep, sum(pinned.values()))
        assert len(held) <= limit
        assert all(k in held for k in model if writer[k] in pinned)
        if len(model) <= limit:  # no reason to evict
            assert held == model
        model = dict(held)  # the evicted are gone
        assert arena.live_bytes == sum(record_size(k, *held[k]) for k in held)


def test_the_least_recently_written_go_first_and_the_log_grows_to_fit() -> None:
    arena = ValueArena(log_bytes=0, max_record=MAX_RECORD)
    for seq in range(1, 201):  # 200 batches of 10 keys, each value written once
        names = [f"s{seq}-{i}" for i in range(10)]
        arena.put(encode_keys(names), *joined([b"x" * 100] * 10), *joined([b""] * 10), seq,
                  500, NO_PINS)
    assert len(arena) == 500
    held = read(arena, [f"s{seq}-{i}" for seq in range(1, 201) for i in range(10)])
    assert set(held) == {f"s{seq}-{i}" for seq in range(151, 201) for i in range(10)}
    many = ValueArena(log_bytes=0, max_record=MAX_RECORD)
    names = [f"n{i}" for i in range(5000)]  # 5000 live records: the index and log grow
    many.put(encode_keys(names), *joined([b"v%d" % i for i in range(5000)]),
             *joined([b""] * 5000), 1, 10_000, NO_PINS)
    assert read(many, names) == {f"n{i}": (b"v%d" % i, b"") for i in range(5000)}
    assert many.log_bytes >= many.live_bytes


def test_a_record_too_large_is_not_kept_and_drops_the_older_value() -> None:
    arena = ValueArena(log_bytes=0, max_record=MAX_RECORD)
    arena.put(encode_keys(["a"]), *joined([b"small"]), *joined([b""]), 1, 10, NO_PINS)
    arena.put(encode_keys(["a"]), *joined([b"x" * MAX_RECORD]), *joined([b""]), 2, 10, NO_PINS)
    assert read(arena, ["a"]) == {} and len(arena) == 0
    with pytest.raises(ValueError, match="max_record"):
        ValueArena(max_record=100)
