"""The silence sweep runs in pages, up to a cap per partition and tick (the worker) or until
nobody is due (the replay), releasing the pipeline between pages."""

from __future__ import annotations

import asyncio
from collections import Counter

from streams.pipeline import BatchResult
from streams.sweep import sweep_in_pages


class FakePipeline:
    """``due`` subscribers are due; each sweep takes up to ``limit`` of them."""

    def __init__(self, due: int) -> None:
        self.due = due
        self.limits: list[int] = []

    async def sweep(self, partition: int, publisher: object, limit: int) -> BatchResult:
        self.limits.append(limit)
        taken = min(limit, self.due)
        self.due -= taken
        return BatchResult(outcomes=Counter(due=taken))


def _pages(due: int, page: int, most: int | None) -> tuple[list[int], int]:
    pipeline = FakePipeline(due)
    asyncio.run(sweep_in_pages(pipeline, None, 0, page, most))  # type: ignore[arg-type]
    return pipeline.limits, pipeline.due


def test_pages_until_nobody_is_due() -> None:
    assert _pages(450, 200, 1000) == ([200, 200, 200], 0)
    assert _pages(400, 200, 1000) == ([200, 200, 200], 0)  # the last page finds nobody
    assert _pages(0, 200, 1000) == ([200], 0)


def test_stops_at_the_cap_per_tick() -> None:
    assert _pages(5000, 200, 1000) == ([200] * 5, 4000)
    assert _pages(5000, 300, 1000) == ([300, 300, 300, 100], 4000)


def test_without_a_cap_pages_until_nobody_is_due() -> None:
    assert _pages(5000, 300, None) == ([300] * 17, 0)
    assert _pages(0, 300, None) == ([300], 0)


class SlowPipeline(FakePipeline):
    """Each page takes ``page_s`` of the loop's clock."""

    def __init__(self, due: int, page_s: float) -> None:
        super().__init__(due)
        self.page_s = page_s
        self.pauses: list[float] = []

    async def sweep(self, partition: int, publisher: object, limit: int) -> BatchResult:
        await _real_sleep(self.page_s)
        return await super().sweep(partition, publisher, limit)


_real_sleep = asyncio.sleep


def _paced(monkeypatch, waiting: bool, share: float) -> SlowPipeline:
    pipeline = SlowPipeline(600, page_s=0.02)

    async def sleep(seconds: float) -> None:
        pipeline.pauses.append(seconds)
        await _real_sleep(0)

    monkeypatch.setattr("streams.sweep.asyncio.sleep", sleep)
    asyncio.run(sweep_in_pages(pipeline, None, 0, 200, 1000,  # type: ignore[arg-type]
                               share, lambda: waiting))
    return pipeline


def test_pages_pause_while_records_wait(monkeypatch) -> None:
    """At a share of 1/4, each page that leaves more to do is followed by a pause of three
    times its own duration while records wait, so batches get the rest of the time."""
    pipeline = _paced(monkeypatch, waiting=True, share=0.25)
    assert pipeline.limits == [200, 200, 200, 200]
    assert len(pipeline.pauses) == 3  # none after the last page: nobody else is due
    assert all(p >= 3 * 0.02 * 0.9 for p in pipeline.pauses)


def test_pages_run_back_to_back_when_nothing_waits(monkeypatch) -> None:
    assert _paced(monkeypatch, waiting=False, share=0.25).pauses == []
    assert _paced(monkeypatch, waiting=True, share=1.0).pauses == []
