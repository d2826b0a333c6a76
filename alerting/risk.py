"""Each subscriber's risk score over time: one point per event-time day (UTC), the latest
score of that day, under the subscriber's hash tag.

A point is 4 bytes: the day (days since 1970-01-01 UTC, uint16: good to 2149), then a uint16
holding the score quantised to 1/16383 (14 bits) and the severity code (2 bits). Points are
kept in one string per subscriber, cut to the last ``cap`` points, so 100 days cost about 400
bytes of Redis. A batch's points for a day the history already ends with replace that last
point (in place); points for earlier days (late events) are ignored. A new day rewrites the
string at its exact size (an ``APPEND`` would leave Redis's greedy slack, up to twice the
string). All points of a batch are written by one script call queued on the batch's commit
pipeline: no extra round trip (on a Redis Cluster, one call per node, see
``churnwatch.infra.redis.script_router``). The key has no expiry of its own (an EXPIRE per
subscriber and batch was a quarter of the script's work): the silence sweep deletes it with
the rest of an idle subscriber, and a churn gives it the state's TTL.

Earlier releases kept 7-byte points (event time in seconds as uint32, score × 10000 as
uint16, severity code) under another key (``Keys.legacy_risk``). A subscriber's first point
under the current layout converts that history (its day, its score to the new scale) and
deletes it; the sweep's removal and a churn's expiry cover the legacy key too, so a
subscriber who never scores again loses it with the rest of its keys.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from typing import Any

from churnwatch.core.keys import Keys
from churnwatch.core.units import DAY_MS
from churnwatch.infra.redis.script_router import ScriptRouter
from churnwatch.infra.redis.writes import ScriptCalls, Write

_POINT = struct.Struct("<HH")
_LEGACY = struct.Struct("<IHB")  # the 7-byte points of earlier releases
_SCALE = 16_383  # the score's 14 bits
_LAST_DAY = 65_535
_SEVERITY = ("", "low", "medium", "high")
_CODE = {name: code for code, name in enumerate(_SEVERITY)}
# KEYS: (history, legacy history) per subscriber; ARGV: cap, then each one's packed points
_SCRIPT = """
local keep = tonumber(ARGV[1]) * 4
local function convert(old)  -- 7-byte points (uint32 seconds, uint16 score x 10000, code)
  local out = {}
  for pos = #old % 7 + 1, #old - 6, 7 do
    local ts, score, code = struct.unpack("<I4I2B", string.sub(old, pos, pos + 6))
    out[#out + 1] = struct.pack("<I2I2", math.floor(ts / 86400),
                                math.floor(score * 16383 / 10000 + 0.5) * 4 + code)
  end
  return table.concat(out)
end
for i = 1, #KEYS, 2 do
  local key, legacy = KEYS[i], KEYS[i + 1]
  local points = ARGV[(i + 1) / 2 + 1]
  local value = nil  -- the whole history, when it is rewritten
  local last = redis.call("GETRANGE", key, -4, -1)
  if #last < 4 then
    local old = redis.call("GET", legacy)
    if old then
      redis.call("DEL", legacy)
      value = convert(old)
      last = string.sub(value, -4)
    end
  end
  local day = -1
  if #last == 4 then day = struct.unpack("<I2", last) end
  local add, replace = {}, nil
  for pos = 1, #points, 4 do
    local point = string.sub(points, pos, pos + 3)
    local d = struct.unpack("<I2", point)
    if d > day then
      add[#add + 1] = point
      day = d
    elseif d == day then
      if #add > 0 then add[#add] = point else replace = point end
    end
  end
  if value == nil and #add > 0 then value = redis.call("GET", key) or "" end
  if value then
    if replace then value = string.sub(value, 1, -5) .. replace end
    value = value .. table.concat(add)
    if #value > keep then value = string.sub(value, -keep) end
    if #value > 0 then redis.call("SET", key, value) end
  elseif replace then
    redis.call("SETRANGE", key, redis.call("STRLEN", key) - 4, replace)
  end
end
return #KEYS / 2
"""


def pack(day: int, score: float, severity: str) -> bytes:
    """One point: the event-time day (days since 1970), score in [0, 1] (clamped), severity
    ("" for none)."""
    q = round(min(max(score, 0.0), 1.0) * _SCALE)
    return _POINT.pack(min(max(day, 0), _LAST_DAY), q << 2 | _CODE[severity])


def unpack(raw: bytes) -> list[dict[str, Any]]:
    """A stored history → its points, oldest first: ``ts`` the day's first millisecond (UTC),
    ``score`` to 4 decimals, ``severity`` (None for none)."""
    return [{"ts": day * DAY_MS, "score": round((v >> 2) / _SCALE, 4),
             "severity": _SEVERITY[v & 3] or None}
            for day, v in _POINT.iter_unpack(raw[len(raw) % _POINT.size:])]


def unpack_legacy(raw: bytes) -> list[dict[str, Any]]:
    """A history of 7-byte points → its points as :func:`unpack` gives them (the day)."""
    return [{"ts": ts // 86_400 * DAY_MS, "score": score / 10_000,
             "severity": _SEVERITY[sev] or None}
            for ts, score, sev in _LEGACY.iter_unpack(raw[len(raw) % _LEGACY.size:])]


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
        sids = list(points)
        keys = [self.keys.risk(sid) for sid in sids]
        packed = [b"".join(pack(ts // DAY_MS, score, sev) for ts, score, sev in series)
                  for series in points.values()]
        calls = tuple((node, [k for i in group for k in (keys[i], self.keys.legacy_risk(sids[i]))],
                       [self.cap, *(packed[i] for i in group)])
                      for node, group in await self.router.split(keys))
        return [ScriptCalls(self.router, self._script, calls)]

    async def read(self, subscriber_id: str) -> list[dict[str, Any]]:
        """The subscriber's points, oldest first: ``ts`` the day's first millisecond (UTC),
        ``score`` to 4 decimals, ``severity`` (None for none). A history still in the legacy
        layout (no point since the upgrade) is read from it."""
        raw = await self.redis.get(self.keys.risk(subscriber_id))
        if raw is None:
            return unpack_legacy(await self.redis.get(self.keys.legacy_risk(subscriber_id)) or b"")
        return unpack(raw)
