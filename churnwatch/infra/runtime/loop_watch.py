"""How long the worker's event loop is held, and by what.

Every batch, timer, sweep page and learner slice runs on one asyncio event loop: while one
of them holds it, nothing else moves (fetched records wait, alerts wait to be published). A
held loop is the usual cause of late alerts, and a latency histogram alone does not say
which work held it.

:class:`LoopWatch` measures it from both sides:

- a task on the loop sleeps ``interval_s`` and records how much later than asked it woke up
  (``churnwatch_event_loop_lag_seconds``);
- a daemon thread checks that task's heartbeat; when the loop has not run it for
  ``stall_s``, it logs one WARNING for that stall with the frames the loop's thread is in
  (the code holding it), and one line when the stall ends, with its length.

Cheap enough to stay on: the task and the thread each wake once per ``interval_s``.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
import time
import traceback
from collections.abc import Callable

log = logging.getLogger("churnwatch.loop")

FRAMES = 8  # innermost frames of the held loop's thread in a stall's log line


class LoopWatch:
    """Loop lag into ``observe`` (seconds); stalls of at least ``stall_s`` logged with the
    loop thread's frames (``stall_s`` 0: no thread, lag only)."""

    def __init__(self, observe: Callable[[float], None], *, interval_s: float = 0.05,
                 stall_s: float = 0.5) -> None:
        if interval_s <= 0 or stall_s < 0:
            raise ValueError("interval_s must be > 0 and stall_s >= 0")
        self.observe = observe
        self.interval_s = interval_s
        self.stall_s = stall_s
        self.stalls = 0  # stalls logged
        self._beat = time.monotonic()
        self._loop_thread: int | None = None
        self._stop = threading.Event()

    async def run(self) -> None:
        """Run on the loop to watch (until cancelled)."""
        self._loop_thread = threading.get_ident()
        self._beat = time.monotonic()
        if self.stall_s > 0:
            threading.Thread(target=self._watch, name="churnwatch-loop-watch",
                             daemon=True).start()
        try:
            while True:
                asked = time.monotonic() + self.interval_s
                await asyncio.sleep(self.interval_s)
                now = time.monotonic()
                self._beat = now
                self.observe(max(0.0, now - asked))
        finally:
            self._stop.set()

    def _watch(self) -> None:
        since: float | None = None  # the last beat before the stall under way
        while not self._stop.wait(self.interval_s):
            beat = self._beat
            held = time.monotonic() - beat - self.interval_s
            if since is not None and beat != since:
                log.warning("event loop ran again after %.0f ms", (beat - since) * 1000)
                since = None
            if since is None and held >= self.stall_s:
                since = beat
                self.stalls += 1
                log.warning("event loop held for %.0f ms so far, in: %s", held * 1000,
                            self._where())

    def _where(self) -> str:
        frame = sys._current_frames().get(self._loop_thread or -1)
        if frame is None:
            return "(unknown)"
        frames = traceback.extract_stack(frame)[-FRAMES:]
        return " <- ".join(f"{f.name} ({_short(f.filename)}:{f.lineno})"
                           for f in reversed(frames))


def _short(path: str) -> str:
    """The last two parts of a source path (``streams/pipeline.py``)."""
    return "/".join(path.replace("\\", "/").rsplit("/", 2)[-2:])
