"""The silence sweep of one partition, a page at a time: what the worker's sweep timer runs
(``churnwatch.worker``) and what the replay runs as event time advances (``streams.replay``).

Each page is one :meth:`~streams.pipeline.Pipeline.sweep`, which holds the pipeline (and the
event loop, most of it) while it runs. Batches come first: while records are ``waiting``,
each page is followed by a pause that keeps the sweep to ``share`` of the time; when nothing
waits the pages run back to back. A quiet subscriber's re-score can wait a second, an
event's alert should not: pages back to back under a live feed held its batches behind them
(p99 event→alert ×3 in the intake benchmark's latency phase).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Protocol

from streams.delivery import BatchResult, Publisher


class Sweeper(Protocol):
    async def sweep(self, partition: int, publisher: Publisher,
                    limit: int = 1000) -> BatchResult: ...


async def sweep_in_pages(pipeline: Sweeper, publisher: Publisher, partition: int, page: int,
                         most: int | None = None, share: float = 1.0,
                         waiting: Callable[[], bool] = lambda: False) -> list[BatchResult]:
    """Sweep ``partition`` ``page`` subscribers at a time until nobody is due at its
    watermark, or ``most`` were swept (``None``: no cap); each page's result, in order.
    While ``waiting()``, a page that leaves more to do is followed by a pause of
    ``1 / share - 1`` times its own duration (``share`` 1: no pause)."""
    loop = asyncio.get_running_loop()
    results: list[BatchResult] = []
    swept = 0
    while most is None or swept < most:
        limit = page if most is None else min(page, most - swept)
        started = loop.time()
        result = await pipeline.sweep(partition, publisher, limit=limit)
        results.append(result)
        due = result.outcomes["due"]
        swept += due
        if due < limit:  # nobody else is due
            break
        if share < 1.0 and waiting() and (most is None or swept < most):
            await asyncio.sleep((loop.time() - started) * (1.0 / share - 1.0))
    return results
