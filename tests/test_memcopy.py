"""The numba memcpy intrinsic (churnwatch/core/memcopy.py) against slice assignment."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit
from numba.core.errors import TypingError

from churnwatch.core.memcopy import copy


@njit(cache=False)
def _copy(dst, dst_at, src, src_at, n):  # type: ignore[no-untyped-def]
    copy(dst, dst_at, src, src_at, n)


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=300), st.data(), st.sampled_from([np.uint8, np.int32, np.int64]))
def test_copy_equals_slice_assignment(raw: bytes, data: st.DataObject, dtype: type) -> None:
    src = np.frombuffer(raw[:len(raw) // np.dtype(dtype).itemsize * np.dtype(dtype).itemsize],
                        dtype)
    src_at = data.draw(st.integers(0, len(src)))
    n = data.draw(st.integers(0, len(src) - src_at))
    dst = np.arange(n + 20, dtype=dtype)
    dst_at = data.draw(st.integers(0, 20))
    expected = dst.copy()
    expected[dst_at:dst_at + n] = src[src_at:src_at + n]
    _copy(dst, dst_at, src, src_at, n)
    assert dst.tobytes() == expected.tobytes()


def test_copy_refuses_mixed_dtypes_and_a_read_only_destination() -> None:
    with pytest.raises(TypingError):
        _copy(np.zeros(4, np.uint8), 0, np.zeros(4, np.int32), 0, 1)
    with pytest.raises(TypingError):
        _copy(np.frombuffer(b"abcd", np.uint8), 0, np.zeros(4, np.uint8), 0, 1)
