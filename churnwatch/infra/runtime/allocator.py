"""glibc malloc settings for a long-running worker.

A worker's largest allocations are transient buffers of hundreds of KB to a few MB: Kafka
fetch responses, a batch's packed commit, the state blobs of a batch. glibc serves blocks
above ``M_MMAP_THRESHOLD`` (128 KiB) with their own mapping, given back on free, but raises
that threshold (up to 32 MiB) each time such a block is freed; from then on these buffers
come from the heap arenas, whose free space fragments and is rarely returned to the system,
so the resident set creeps up under a steady load. :func:`fix_mmap_threshold` sets the
threshold once, which also turns the dynamic raise off.

glibc also gives threads their own arenas (up to 8 per core), each with its own free space;
the worker's Kafka consumer thread allocates fetches that the main thread frees.
:func:`limit_arenas` caps their number (``M_ARENA_MAX``). It only bounds arenas created
afterwards, so it must run before the process starts threads (numpy's BLAS pool, Faust's
consumer thread). Elsewhere than glibc both do nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
from typing import Any

log = logging.getLogger("churnwatch.allocator")

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers, <malloc.h>
M_ARENA_MAX = -8


def _mallopt() -> Any:
    """glibc's ``mallopt``, or None where there is none."""
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.info("no glibc mallopt here; the allocator keeps its defaults")
        return None
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return mallopt


def fix_mmap_threshold(size: int) -> bool:
    """Serve blocks of ``size`` bytes and more with their own mapping, always (0: leave
    glibc's dynamic threshold). True if the setting was applied."""
    if size <= 0:
        return False
    mallopt = _mallopt()
    return bool(mallopt and mallopt(M_MMAP_THRESHOLD, size))


def limit_arenas(count: int) -> bool:
    """Let all threads share at most ``count`` malloc arenas (0: leave glibc's default, 8 per
    core). Call it before starting threads. True if the setting was applied."""
    if count <= 0:
        return False
    mallopt = _mallopt()
    if not (mallopt and mallopt(M_ARENA_MAX, count)):
        return False
    threads = _thread_count()
    if threads > 1:
        log.warning("malloc_arena_max set with %d threads running: arenas they already have "
                    "stay", threads)
    return True


def _thread_count() -> int:
    """This process's threads, native ones included (1 where /proc is missing)."""
    try:
        return len(os.listdir("/proc/self/task"))
    except OSError:
        return 1
