"""Diagnostic: where a long-running worker's memory goes (off unless asked for).

    CHURNWATCH_MEMTRACE_FILE=/tmp/worker-mem.jsonl churnwatch worker

With ``memtrace_file`` set, the worker starts :mod:`tracemalloc` and a daemon thread that
runs a full garbage collection (so samples compare live objects, not garbage waiting for the
next collection) and appends one JSON line to the file every ``memtrace_interval_s`` seconds
(default 30): the resident set, the bytes Python has allocated (tracemalloc), glibc's malloc
counters (``mallinfo2``: in use, free inside its arenas, mmapped), the count of live
garbage-collected objects, and - against the first sample - the object types whose counts
grew most and the allocation sites (tracebacks of 6 frames) whose bytes grew most. Python
objects growing shows in the last two; RSS growing while they stay flat is native memory or
allocator fragmentation.

Unset (the default) nothing is started and nothing costs anything. Tracing halves the
worker's throughput and its snapshots cost memory: for soaks and investigations only.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import json
import os
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

FRAMES = 6
TOP = 12


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo() -> Any:
    """glibc's ``mallinfo2``, or None where it does not exist (musl, macOS, glibc < 2.33)."""
    name = ctypes.util.find_library("c")
    try:
        fn = ctypes.CDLL(name).mallinfo2 if name else None
    except (OSError, AttributeError):
        return None
    if fn is None:
        return None
    fn.restype = _MallInfo2
    return fn


def rss_bytes() -> int:
    """This process's resident set size, from /proc (0 where there is none)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def type_counts() -> Counter[str]:
    """Live garbage-collected objects by type (frozen ones excluded: startup's heap)."""
    return Counter(f"{type(o).__module__}.{type(o).__qualname__}" for o in gc.get_objects())


def _site(stat: tracemalloc.StatisticDiff) -> list[str]:
    return [f"{f.filename}:{f.lineno}" for f in stat.traceback]


class MemTrace:
    """Samples memory into ``path`` every ``interval_s`` from a daemon thread."""

    def __init__(self, path: Path, interval_s: float = 30.0, frames: int = FRAMES,
                 top: int = TOP) -> None:
        if interval_s <= 0:
            raise ValueError("interval_s must be positive")
        self.path = path
        self.interval_s = interval_s
        self.frames = frames
        self.top = top
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="memtrace", daemon=True)
        self._mallinfo = _mallinfo()
        self._baseline: tracemalloc.Snapshot | None = None
        self._baseline_types: Counter[str] = Counter()
        self._started = 0.0

    def start(self) -> MemTrace:
        if not tracemalloc.is_tracing():
            tracemalloc.start(self.frames)
        self._started = time.monotonic()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        tracemalloc.stop()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()

    def sample(self) -> dict[str, Any]:
        """Collect garbage, take one sample, append it to the file, and return it."""
        gc.collect()
        snapshot = tracemalloc.take_snapshot().filter_traces(
            [tracemalloc.Filter(False, tracemalloc.__file__)])
        types = type_counts()
        current, peak = tracemalloc.get_traced_memory()
        row: dict[str, Any] = {
            "t": round(time.monotonic() - self._started, 1), "rss": rss_bytes(),
            "traced": current, "traced_peak": peak, "gc_objects": sum(types.values()),
            "gc_counts": gc.get_count(),
        }
        if self._mallinfo is not None:
            m = self._mallinfo()
            row["malloc"] = {"in_use": m.uordblks, "free": m.fordblks, "arena": m.arena,
                             "mmapped": m.hblkhd}
        if self._baseline is None:
            self._baseline, self._baseline_types = snapshot, types
        else:
            grown = types.copy()
            grown.subtract(self._baseline_types)
            row["types_grown"] = [[name, n] for name, n in grown.most_common(self.top) if n > 0]
            diff = snapshot.compare_to(self._baseline, "traceback")
            row["sites_grown"] = [
                {"bytes": d.size_diff, "count": d.count_diff, "at": _site(d)}
                for d in diff[:self.top] if d.size_diff > 0]
        with self.path.open("a") as f:
            f.write(json.dumps(row) + "\n")
        return row


def start(path: Path | None, interval_s: float) -> MemTrace | None:
    """Start tracing into ``path``; None (nothing started) when no file is configured."""
    if path is None:
        return None
    if not path.parent.is_dir():
        from churnwatch.core.errors import ConfigError

        raise ConfigError(f"CHURNWATCH_MEMTRACE_FILE={str(path)!r}: directory "
                          f"{str(path.parent)!r} does not exist. Fix: point it at a file in an "
                          "existing directory, or unset it")
    return MemTrace(path, interval_s).start()
