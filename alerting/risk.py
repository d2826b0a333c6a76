"""Each subscriber's risk score over time: one point per batch (or silence sweep) that scored
the subscriber, under the subscriber's hash tag.

A point is 7 bytes (event time in seconds as uint32, score × 10000 as uint16, severity code)
appended to one string per subscriber and cut to the last ``cap`` points, so 100 points cost
about 700 bytes of Redis. All points of a batch are written by one script call queued on the
batch's commit pipeline: no extra round trip, one command per batch.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping
from typing import Any

from churnwatch.keys import Keys

_POINT = struct.Struct("<IHB")
_SEVERITY = ("", "low", "medium", "high")
_CODE = {name: code for code, name in enumerate(_SEVERITY)}
_SCRIPT = """
local keep, ttl = tonumber(ARGV[1]) * 7, tonumber(ARGV[2])
for i, key in ipairs(KEYS) do
  if redis.call("APPEND", key, ARGV[i + 2]) > keep then
    redis.call("SET", key, redis.call("GETRANGE", key, -keep, -1))
  end
  redis.call("EXPIRE", key, ttl)
end
return #KEYS
"""


class RiskHistory:
    """Records and reads subscribers' risk points: (event time ms, score, severity or "")."""

    def __init__(self, redis: Any, keys: Keys = Keys(), cap: int = 100,
                 ttl_s: int = 400 * 86_400) -> None:
        self.redis = redis
        self.keys = keys
        self.cap = cap
        self.ttl_s = ttl_s
        self._script = redis.register_script(_SCRIPT)

    async def record(self, pipe: Any, points: Mapping[str, tuple[int, float, str]]) -> None:
        """Queue one point per subscriber on ``pipe`` (the caller executes it)."""
        if not points or not self.cap:
            return
        keys = [self.keys.risk(sid) for sid in points]
        packed = [_POINT.pack(max(0, ts // 1000), round(min(max(score, 0.0), 1.0) * 10_000),
                              _CODE[severity]) for ts, score, severity in points.values()]
        await self._script(keys=keys, args=[self.cap, self.ttl_s, *packed], client=pipe)

    async def read(self, subscriber_id: str) -> list[dict[str, Any]]:
        """The subscriber's points, oldest event time first (times to the second)."""
        raw = await self.redis.get(self.keys.risk(subscriber_id)) or b""
        points = [{"ts": ts * 1000, "score": score / 10_000, "severity": _SEVERITY[sev] or None}
                  for ts, score, sev in _POINT.iter_unpack(raw[len(raw) % _POINT.size:])]
        return sorted(points, key=lambda p: p["ts"])
