"""A batch's state values as one buffer (features/values.py) against plain dicts."""

from __future__ import annotations

import hiredis
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from features.extension import frame, split
from features.values import StateValues


def unpack(packed: bytes, n: int) -> list[bytes]:
    sizes = np.frombuffer(packed, "<u4", n).tolist()
    out, pos = [], 4 * n
    for size in sizes:
        out.append(packed[pos:pos + size])
        pos += size
    assert pos == len(packed)
    return out


def build(parts: list[tuple[bytes, bytes, bytes]]) -> StateValues:
    """Values blob | frame(extension) | attributes, as the stage encodes them."""
    values = [blob + frame(ext) + attrs if blob else b"" for blob, ext, attrs in parts]
    off = np.zeros(len(values) + 1, np.int64)
    np.cumsum([len(v) for v in values], out=off[1:])
    blob_len = np.array([len(blob) for blob, _, _ in parts], np.int64)
    return StateValues([f"s{i}" for i in range(len(parts))], b"".join(values), off, blob_len)


part = st.tuples(st.binary(min_size=0, max_size=12), st.binary(max_size=6),
                 st.binary(min_size=1, max_size=6).filter(lambda b: b[0] != 0xC1))


@settings(max_examples=200, deadline=None)
@given(st.lists(part, min_size=1, max_size=12), st.data())
def test_values_parts_and_packing_agree_with_a_dict(parts: list, data: st.DataObject) -> None:
    values = build(parts)
    values.buffer()  # built before the replacements: each of them must rebuild it
    want = {f"s{i}": (blob + frame(ext) + attrs if blob else b"")
            for i, (blob, ext, attrs) in enumerate(parts)}
    for i, (blob, ext, attrs) in enumerate(parts):
        if not blob:
            continue
        change = data.draw(st.sampled_from(["keep", "extension", "attributes"]))
        if change == "extension":
            ext = data.draw(st.binary(max_size=300))  # a longer frame length, too
            values.replace_extension(f"s{i}", ext)
        elif change == "attributes":
            attrs = data.draw(st.binary(min_size=1, max_size=8).filter(lambda b: b[0] != 0xC1))
            values.replace_attributes(f"s{i}", attrs)
        want[f"s{i}"] = blob + frame(ext) + attrs
        assert values.parts(f"s{i}") == (blob, ext, attrs)
    assert dict(values) == want
    bodies = [split(v[len(parts[i][0]):])[0] if v else b"" for i, v in enumerate(want.values())]
    for size in (1, 4, 9):
        lengths, heads = values.extension_heads(size)
        assert lengths.tolist() == [len(b) for b in bodies]
        assert [bytes(h) for h in heads] == [b[:size].ljust(size, b"\0") for b in bodies]
    assert values.in_order() == list(want.values())
    stored = [i for i, v in enumerate(want.values()) if v]
    chosen, packed = values.packed()
    assert chosen == stored
    assert unpack(packed, len(chosen)) == [want[f"s{i}"] for i in chosen]
    command = values.mset([f"k{i}" for i in range(len(parts))])
    assert (bytes(command.chunk) if command else None) == (hiredis.pack_command(
        ("MSET", *[x for i in stored for x in (f"k{i}", want[f"s{i}"])])) if stored else None)
    members = data.draw(st.lists(st.sampled_from(range(len(parts))), unique=True))
    chosen, packed = values.packed(members)
    assert chosen == [i for i in members if want[f"s{i}"]]
    assert unpack(packed, len(chosen)) == [want[f"s{i}"] for i in chosen]


def test_values_from_a_mapping_and_lookups() -> None:
    values = StateValues.of({"a": b"12", "b": b"", "c": b"345"})
    assert values["c"] == b"345" and "b" in values and "z" not in values and len(values) == 3
    assert values.packed() == ([0, 2], np.array([2, 3], "<u4").tobytes() + b"12345")
    with pytest.raises(KeyError):
        values["z"]
    with pytest.raises(ValueError, match="blob length"):
        values.parts("a")
    with pytest.raises(ValueError, match="offsets"):
        StateValues(["a"], b"", np.zeros(1, np.int64), np.zeros(1, np.int64))
    assert split(b"") == (b"", b"")
