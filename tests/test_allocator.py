"""The worker's malloc settings (churnwatch/infra/runtime/allocator.py), in fresh interpreters."""

from __future__ import annotations

import subprocess
import sys

import pytest

from churnwatch.core.errors import ConfigError
from churnwatch.infra.runtime.memtrace import _mallinfo
from churnwatch.infra.settings_load import load_settings

PROBE = """
from churnwatch.infra.runtime.allocator import fix_mmap_threshold
from churnwatch.infra.runtime.memtrace import _mallinfo
info = _mallinfo()
applied = fix_mmap_threshold({size})
big = bytes(4_000_000)  # a mapped block; freeing it raises glibc's dynamic threshold
del big
before = info().hblkhd
buffer = bytearray(1_000_000)
print(applied, info().hblkhd - before)
"""

# THREADS threads each malloc while all are alive (an exited thread's arena would be reused),
# then glibc's own report (malloc_info) counts the arenas: one <heap nr=...> each
ARENAS_PROBE = """
import ctypes, ctypes.util, os, tempfile, threading
from churnwatch.infra.runtime.allocator import limit_arenas
libc = ctypes.CDLL(ctypes.util.find_library("c"))
libc.malloc.restype = ctypes.c_void_p
libc.free.argtypes = (ctypes.c_void_p,)
libc.fopen.restype = ctypes.c_void_p
libc.fopen.argtypes = (ctypes.c_char_p, ctypes.c_char_p)
libc.malloc_info.argtypes = (ctypes.c_int, ctypes.c_void_p)
libc.fclose.argtypes = (ctypes.c_void_p,)
applied = limit_arenas({count})
THREADS = 3
allocated, done = threading.Barrier(THREADS + 1), threading.Event()

def work():
    block = libc.malloc(1000)
    allocated.wait()
    done.wait()
    libc.free(block)

threads = [threading.Thread(target=work) for _ in range(THREADS)]
for t in threads:
    t.start()
allocated.wait()
path = os.path.join(tempfile.mkdtemp(), "malloc_info.xml")
f = libc.fopen(path.encode(), b"w")
libc.malloc_info(0, f)
libc.fclose(f)
done.set()
for t in threads:
    t.join()
print(applied, open(path).read().count("<heap nr="))
"""


def mapped_after_a_big_free(size: int) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", PROBE.format(size=size)], check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


def arenas_with_three_threads(count: int) -> tuple[str, int]:
    out = subprocess.run([sys.executable, "-c", ARENAS_PROBE.format(count=count)], check=True,
                         capture_output=True, text=True).stdout.split()
    return out[0], int(out[1])


@pytest.mark.skipif(_mallinfo() is None, reason="glibc only")
def test_a_fixed_threshold_keeps_megabyte_buffers_out_of_the_heap() -> None:
    assert mapped_after_a_big_free(0) == ("False", 0)  # glibc's default: from the heap now
    applied, mapped = mapped_after_a_big_free(128 * 1024)
    assert applied == "True"
    assert mapped >= 1_000_000


@pytest.mark.skipif(_mallinfo() is None, reason="glibc only")
def test_an_arena_limit_makes_threads_share_arenas() -> None:
    assert arenas_with_three_threads(0) == ("False", 4)  # glibc's default: one per thread
    assert arenas_with_three_threads(2) == ("True", 2)
    assert arenas_with_three_threads(1) == ("True", 1)  # everything from the main arena


def test_a_negative_arena_limit_is_a_configuration_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHURNWATCH_MALLOC_ARENA_MAX", "-1")
    with pytest.raises(ConfigError, match="CHURNWATCH_MALLOC_ARENA_MAX.*greater than or equal"):
        load_settings()
