"""The silence index: which subscribers to re-score because they have gone quiet.

A subscriber who sends nothing is never scored by the event path, yet silence is itself a
warning sign (logins stop, spend stops). Per partition, a sorted set holds each subscriber's
next check time in event time: its latest event time plus ``quiet_ms``, pushed forward by
``every_ms`` after each check. The partition's watermark (highest event time seen) says what
"now" is. A sweep asks for members due at the watermark, a bounded page at a time, so no tick
ever scans Redis.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS


@dataclass(frozen=True)
class SilenceIndex:
    keys: Keys = Keys()
    quiet_ms: int = DAY_MS
    every_ms: int = DAY_MS

    def record(self, pipe: Any, partition: int, clocks: Mapping[str, int]) -> None:
        """Queue on a redis pipeline: these subscribers were active up to these event times."""
        if not clocks:
            return
        pipe.zadd(self.keys.silence_due(partition),
                  {sid: ts + self.quiet_ms for sid, ts in clocks.items()}, gt=True)
        pipe.zadd(self.keys.watermarks(), {str(partition): max(clocks.values())}, gt=True)

    def reschedule(self, pipe: Any, partition: int, subscribers: Sequence[str],
                   watermark: int) -> None:
        """Queue: these subscribers were checked at ``watermark``; check again ``every_ms`` later."""
        if subscribers:
            pipe.zadd(self.keys.silence_due(partition),
                      {sid: watermark + self.every_ms for sid in subscribers}, gt=True)

    async def due(self, redis: Any, partition: int, limit: int) -> tuple[int | None, list[str]]:
        """The partition's watermark and up to ``limit`` subscribers due at it."""
        watermark = await redis.zscore(self.keys.watermarks(), str(partition))
        if watermark is None:
            return None, []
        wm = int(watermark)
        members = await redis.zrangebyscore(self.keys.silence_due(partition), "-inf", wm,
                                            start=0, num=limit)
        return wm, [m.decode() for m in members]

    def forget(self, pipe: Any, partition: int, subscribers: Sequence[str]) -> None:
        """Queue: drop subscribers whose state has expired from the index."""
        if subscribers:
            pipe.zrem(self.keys.silence_due(partition), *subscribers)
