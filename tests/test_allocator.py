"""The worker's fixed mmap threshold (churnwatch/allocator.py), in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from churnwatch.memtrace import _mallinfo

PROBE = """
from churnwatch.allocator import fix_mmap_threshold
from churnwatch.memtrace import _mallinfo
info = _mallinfo()
applied = fix_mmap_threshold({size})
big = bytes(4_000_000)  # a mapped block; freeing it raises glibc's dynamic threshold
del big
before = info().hblkhd
buffer = bytearray(1_000_000)
print(applied, info().hblkhd - before)
"""


def mapped_after_a_big_free(size: int) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(size=size)], check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(_mallinfo() is None, reason="glibc only")
def test_a_fixed_threshold_keeps_megabyte_buffers_out_of_the_heap() -> None:
    assert mapped_after_a_big_free(0) == ("False", 0)  # glibc's default: from the heap now
    applied, mapped = mapped_after_a_big_free(128 * 1024)
    assert applied == "True"
    assert mapped >= 1_000_000
