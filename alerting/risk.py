"""Each subscriber's risk score over time: one point per event-time day (UTC), the latest
score of that day, under the subscriber's hash tag.

A point is 7 bytes (event time in seconds as uint32, score × 10000 as uint16, severity code)
appended to one string per subscriber and cut to the last ``cap`` points, so 100 days cost
about 700 bytes of Redis. A batch's points for a day the history already ends with replace
that last point; points for earlier days (late events) are ignored. All points of a batch are
written by one script call queued on the batch's commit pipeline: no extra round trip (on a
Redis Cluster, one call per node, see ``churnwatch.infra.redis.script_router``). The key has no expiry of
its own (an EXPIRE per subscriber and batch was a quarter of the script's work): the silence
sweep deletes it with the rest of an idle subscriber, and a churn gives it the state's TTL.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from churnwatch.core.keys import Keys
from churnwatch.infra.redis.script_router import ScriptRouter
from churnwatch.infra.redis.writes import ScriptCalls, Write

_POINT = struct.Struct("<IHB")
_SEVERITY = ("", "low", "medium", "high")
_CODE = {name: code for code, name in enumerate(_SEVERITY)}
_SCRIPT = """
local keep = tonumber(ARGV[1]) * 7
for i, key in ipairs(KEYS) do
  local points = ARGV[i + 1]
  local last = redis.call("GETRANGE", key, -7, -1)
  local day = -1
  if #last == 7 then day = math.floor(struct.unpack("<I4", last) / 86400) end
  local add, replace = {}, nil
  for pos = 1, #points, 7 do
    local point = string.sub(points, pos, pos + 6)
    local d = math.floor(struct.unpack("<I4", point) / 86400)
    if d > day then
      add[#add + 1] = point
      day = d
    elseif d == day then
      if #add > 0 then add[#add] = point else replace = point end
    end
  end
  if replace then
    redis.call("SETRANGE", key, redis.call("STRLEN", key) - 7, replace)
  end
  if #add > 0 and redis.call("APPEND", key, table.concat(add)) > keep then
    redis.call("SET", key, redis.call("GETRANGE", key, -keep, -1))
  end
end
return #KEYS
"""


class RiskHistory:
    """Records and reads subscribers' daily risk points: (event time ms, score, severity)."""

    def __init__(self, redis: Any, keys: Keys = Keys(), cap: int = 100) -> None:
        self.redis = redis
        self.keys = keys
        self.cap = cap
        self._script = redis.register_script(_SCRIPT)
        self.router = ScriptRouter(redis)

    async def writes(self, points: Mapping[str, Sequence[tuple[int, float, str]]]
                     ) -> list[Write]:
        """Each subscriber's points (event time ms, score, severity or ""); a point for a day
        before the previous one is ignored."""
        if not points or not self.cap:
            return []
        keys = [self.keys.risk(sid) for sid in points]
        packed = [b"".join(_POINT.pack(max(0, ts // 1000),
                                       round(min(max(score, 0.0), 1.0) * 10_000), _CODE[sev])
                           for ts, score, sev in series) for series in points.values()]
        calls = tuple((node, [keys[i] for i in group], [self.cap, *(packed[i] for i in group)])
                      for node, group in await self.router.split(keys))
        return [ScriptCalls(self.router, self._script, calls)]

    async def read(self, subscriber_id: str) -> list[dict[str, Any]]:
        """The subscriber's points, oldest first (times to the second)."""
        raw = await self.redis.get(self.keys.risk(subscriber_id)) or b""
        return [{"ts": ts * 1000, "score": score / 10_000, "severity": _SEVERITY[sev] or None}
                for ts, score, sev in _POINT.iter_unpack(raw[len(raw) % _POINT.size:])]
