"""The silence index: which subscribers to re-score because they have gone quiet.

A subscriber who sends nothing is never scored by the event path, yet silence is itself a
warning sign (logins stop, spend stops). Per partition, a sorted set holds each subscriber's
next check time in event time: its latest event time plus ``quiet_ms``, pushed forward by
``every_ms`` after each check. The partition's watermark (highest event time seen) says what
"now" is. A sweep asks for members due at the watermark, a bounded page at a time, so no tick
ever scans Redis.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.infra.redis.writes import Command


@dataclass(frozen=True)
class SilenceIndex:
    keys: Keys = Keys()
    quiet_ms: int = DAY_MS
    every_ms: int = DAY_MS

    def record(self, partition: int, clocks: Mapping[str, int]) -> list[Command]:
        """These subscribers were active up to these event times."""
        if not clocks:
            return []
        return [Command("ZADD", self.keys.silence_due(partition), "GT",
                        *_pairs((ts + self.quiet_ms, sid) for sid, ts in clocks.items())),
                Command("ZADD", self.keys.watermarks(), "GT", max(clocks.values()),
                        str(partition))]

    def reschedule(self, partition: int, subscribers: Sequence[str],
                   watermark: int) -> list[Command]:
        """These subscribers were checked at ``watermark``; check again ``every_ms`` later."""
        if not subscribers:
            return []
        due = watermark + self.every_ms
        return [Command("ZADD", self.keys.silence_due(partition), "GT",
                        *_pairs((due, sid) for sid in subscribers))]

    async def watermark(self, redis: Any, partition: int) -> int | None:
        """The partition's watermark: the highest event time it has applied (None: none)."""
        watermark = await redis.zscore(self.keys.watermarks(), str(partition))
        return None if watermark is None else int(watermark)

    async def due(self, redis: Any, partition: int, limit: int) -> tuple[int | None, list[str]]:
        """The partition's watermark and up to ``limit`` subscribers due at it."""
        wm = await self.watermark(redis, partition)
        if wm is None:
            return None, []
        members = await redis.zrangebyscore(self.keys.silence_due(partition), "-inf", wm,
                                            start=0, num=limit)
        return wm, [m.decode() for m in members]

    def forget(self, partition: int, subscribers: Sequence[str]) -> list[Command]:
        """Drop subscribers whose state has expired (or who churned) from the index."""
        if not subscribers:
            return []
        return [Command("ZREM", self.keys.silence_due(partition), *subscribers)]


def _pairs(scored: Iterable[tuple[int, str]]) -> list[Any]:
    """``(score, member)`` pairs flattened as ZADD takes them."""
    return [x for pair in scored for x in pair]
