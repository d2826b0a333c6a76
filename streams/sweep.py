"""The silence sweep of one partition, a page at a time: what the worker's sweep timer runs
(``churnwatch.worker``) and what the replay runs as event time advances (``streams.replay``).

Each page is one :meth:`~streams.pipeline.Pipeline.sweep`: batches waiting for the pipeline
run between pages (one 1,000-subscriber sweep held them ~25 ms a partition, the tail of the
latency benchmark).
"""

from __future__ import annotations

from typing import Protocol

from streams.delivery import BatchResult, Publisher


class Sweeper(Protocol):
    async def sweep(self, partition: int, publisher: Publisher,
                    limit: int = 1000) -> BatchResult: ...


async def sweep_in_pages(pipeline: Sweeper, publisher: Publisher, partition: int, page: int,
                         most: int | None = None) -> list[BatchResult]:
    """Sweep ``partition`` ``page`` subscribers at a time until nobody is due at its
    watermark, or ``most`` were swept (``None``: no cap); each page's result, in order."""
    results: list[BatchResult] = []
    swept = 0
    while most is None or swept < most:
        limit = page if most is None else min(page, most - swept)
        result = await pipeline.sweep(partition, publisher, limit=limit)
        results.append(result)
        due = result.outcomes["due"]
        swept += due
        if due < limit:  # nobody else is due
            break
    return results
