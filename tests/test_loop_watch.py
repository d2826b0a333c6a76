"""The event-loop watch: lag is recorded, and a held loop is logged with the code holding it."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest

from churnwatch.infra.runtime.loop_watch import LoopWatch


def _hold_the_loop(seconds: float) -> None:
    time.sleep(seconds)  # a blocking call on the loop's thread, as a long batch would be


async def _watched(watch: LoopWatch, hold_s: float) -> None:
    task = asyncio.ensure_future(watch.run())
    await asyncio.sleep(0.2)  # a few quiet beats first
    _hold_the_loop(hold_s)
    await asyncio.sleep(0.3)  # the loop runs again: the stall ends
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


def test_a_held_loop_is_measured_and_logged_with_the_code_holding_it(caplog) -> None:
    lags: list[float] = []
    watch = LoopWatch(lags.append, interval_s=0.02, stall_s=0.2)
    with caplog.at_level(logging.WARNING, logger="churnwatch.loop"):
        asyncio.run(_watched(watch, hold_s=1.0))
    assert max(lags) >= 0.9  # the beat after the hold woke up a second late
    assert watch.stalls == 1
    held = [r.getMessage() for r in caplog.records if "held for" in r.getMessage()]
    assert len(held) == 1 and "_hold_the_loop" in held[0] and "test_loop_watch.py" in held[0]
    ended = [r.getMessage() for r in caplog.records if "ran again after" in r.getMessage()]
    assert len(ended) == 1


def test_a_loop_that_is_never_held_logs_nothing(caplog) -> None:
    lags: list[float] = []
    watch = LoopWatch(lags.append, interval_s=0.02, stall_s=0.5)
    with caplog.at_level(logging.WARNING, logger="churnwatch.loop"):
        asyncio.run(_watched(watch, hold_s=0.0))
    assert lags and watch.stalls == 0
    assert not [r for r in caplog.records if r.name == "churnwatch.loop"]


def test_stall_logging_can_be_turned_off(caplog) -> None:
    lags: list[float] = []
    watch = LoopWatch(lags.append, interval_s=0.02, stall_s=0)
    with caplog.at_level(logging.WARNING, logger="churnwatch.loop"):
        asyncio.run(_watched(watch, hold_s=0.4))
    assert max(lags) >= 0.3 and watch.stalls == 0
    assert not [r for r in caplog.records if r.name == "churnwatch.loop"]
