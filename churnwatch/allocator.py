"""glibc malloc settings for a long-running worker.

A worker's largest allocations are transient buffers of hundreds of KB to a few MB: Kafka
fetch responses, a batch's packed commit, the state blobs of a batch. glibc serves blocks
above ``M_MMAP_THRESHOLD`` (128 KiB) with their own mapping, given back on free, but raises
that threshold (up to 32 MiB) each time such a block is freed; from then on these buffers
come from the heap arenas, whose free space fragments and is rarely returned to the system,
so the resident set creeps up under a steady load. :func:`fix_mmap_threshold` sets the
threshold once, which also turns the dynamic raise off. Elsewhere than glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("churnwatch.allocator")

M_MMAP_THRESHOLD = -3  # mallopt parameter numbers, <malloc.h>


def fix_mmap_threshold(size: int) -> bool:
    """Serve blocks of ``size`` bytes and more with their own mapping, always (0: leave
    glibc's dynamic threshold). True if the setting was applied."""
    if size <= 0:
        return False
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt if name else None
    except (OSError, AttributeError):
        mallopt = None
    if mallopt is None:
        log.info("no glibc mallopt here; the allocator keeps its defaults")
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    return bool(mallopt(M_MMAP_THRESHOLD, size))
