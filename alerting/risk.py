"""Each subscriber's risk score over time: one point per batch (or silence sweep) that scored
the subscriber, in a capped Redis Stream under the subscriber's hash tag.

All points of a batch are written by one script call queued on the batch's commit pipeline,
so the history costs no extra round trip and one command per batch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import msgspec

from churnwatch.keys import Keys

_SCRIPT = """
local cap, ttl, points = tonumber(ARGV[1]), tonumber(ARGV[2]), cmsgpack.unpack(ARGV[3])
for i, key in ipairs(KEYS) do
  local p = points[i]
  redis.call("XADD", key, "MAXLEN", cap, "*", "t", p[1], "s", p[2], "v", p[3])
  redis.call("EXPIRE", key, ttl)
end
return #KEYS
"""
_packer = msgspec.msgpack.Encoder()


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
        packed = _packer.encode([[str(ts), f"{score:.4f}", sev] for ts, score, sev
                                 in points.values()])
        await self._script(keys=keys, args=[self.cap, self.ttl_s, packed], client=pipe)

    async def read(self, subscriber_id: str) -> list[dict[str, Any]]:
        """The subscriber's points, oldest event time first."""
        entries = await self.redis.xrange(self.keys.risk(subscriber_id))
        points = [{"ts": int(f[b"t"]), "score": float(f[b"s"]), "severity": f[b"v"].decode() or None}
                  for _, f in entries]
        return sorted(points, key=lambda p: p["ts"])
