"""Garbage-collector settings for a long-running batch worker, and a probe of its pauses.

A worker allocates about ten objects an event. With CPython's default thresholds (700) a
full collection of the heap ran every few seconds and took up to 150 ms on this machine: the
tail of the event-to-alert latency. :func:`tune` freezes what startup built (modules, the
compiled rules, the model) out of later collections and collects young objects after 50,000
allocations; ``benchmarks/profile_pipeline.py`` measures the difference (``--gc default``).
With those thresholds a full collection would come only every ~100M allocations, so garbage
cycles that outlived a young collection piled up (the soak's RSS grew ~25 MB in 10 minutes):
the worker runs :func:`collect` on a timer (``gc_interval_s``), a full pass over the
post-startup heap only (tens of milliseconds).
"""

from __future__ import annotations

import gc
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

THRESHOLDS = (50_000, 20, 100)


def tune() -> None:
    """Call once, after startup: freeze the current heap and raise the thresholds."""
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)


def collect() -> int:
    """A full collection now; returns the unreachable objects found."""
    return gc.collect()


@contextmanager
def pauses() -> Iterator[dict[int, list[float]]]:
    """Collect the collector's pauses (seconds, by generation) while the block runs."""
    out: dict[int, list[float]] = defaultdict(list)
    started = [0.0]

    def callback(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            out[info["generation"]].append(time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    try:
        yield out
    finally:
        gc.callbacks.remove(callback)
